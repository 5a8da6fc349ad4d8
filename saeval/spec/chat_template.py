"""``--apply-chat-template`` needs a tokenizer with a chat template: a local model folder is
checked before the model loads, any other model right after (``template_problem``).

transformers reads a template from ``tokenizer_config.json``'s ``chat_template``, from
``chat_template.jinja``, ``chat_template.json`` or the ``additional_chat_templates/`` folder.
Without one, lm-eval fails with its own ValueError only when it formats the first request.
"""

from __future__ import annotations

import json
from pathlib import Path

from saeval.errors import ResolutionError

_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_TEMPLATE_DIR = "additional_chat_templates"
_HINT = "leave out --apply-chat-template (apply_chat_template:) for a base model without one"


def template_problem(model: str, template: object) -> ResolutionError | None:
    """The error for ``--apply-chat-template`` on ``model`` whose loaded tokenizer's
    ``chat_template`` is ``template`` (None or empty: it has none)."""
    if template:
        return None
    return ResolutionError(
        f"--apply-chat-template: the tokenizer of {model} has no chat template", hint=_HINT
    )


def check_local_template(model: str) -> None:
    """A local model folder's tokenizer files hold a chat template (other models: unchecked
    until loaded); ResolutionError naming the folder if not."""
    folder = Path(model).expanduser()
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return  # not a local folder with tokenizer files: the loaded tokenizer is checked
    if any((folder / name).is_file() for name in _TEMPLATE_FILES):
        return
    templates = folder / _TEMPLATE_DIR
    if templates.is_dir() and any(templates.iterdir()):
        return
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return  # an unreadable tokenizer config is transformers' to report when it loads
    error = template_problem(str(folder), template)
    if error is not None:
        error.message += f" (neither {config.name} nor {' nor '.join(_TEMPLATE_FILES)} has one)"
        raise error
