"""The embedded demo: Gemma 3 270M (converted from PyPI into the cache), a demo SAE of concept
directions, and small lm-eval tasks. Heavy work lives in `model`, `sae` and `lm_tasks`; this
package and `paths` import nothing heavy."""

from saeval.demo.paths import DEMO_MODEL_ID, DEMO_RELEASE, DEMO_SAE_ID, cache_root

__all__ = ["DEMO_MODEL_ID", "DEMO_RELEASE", "DEMO_SAE_ID", "cache_root"]
