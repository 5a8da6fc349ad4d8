"""``registered``: hooks run in the order given while the block is open, and none is left behind
when the block ends, raises, or a registration fails. Outputs are checked against the module's
own weights computed by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from saeval.steering.module_hooks import ModuleHook, registered


@pytest.fixture
def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def _plain(linear: nn.Linear, x: Tensor) -> Tensor:
    """``x W^T + b``, from the weights."""
    return x @ linear.weight.detach().T + linear.bias.detach()


def _hook_count(module: nn.Module) -> int:
    return len(module._forward_hooks) + len(module._forward_pre_hooks)


def test_output_hooks_compose_in_order_and_leave_with_the_block(linear: nn.Linear) -> None:
    x = torch.randn(2, 4)
    plus_one = ModuleHook(linear, lambda module, args, output: output + 1)
    doubled = ModuleHook(linear, lambda module, args, output: output * 2)
    with torch.no_grad(), registered(plus_one, doubled):
        torch.testing.assert_close(linear(x), (_plain(linear, x) + 1) * 2)
    assert _hook_count(linear) == 0
    with torch.no_grad():
        torch.testing.assert_close(linear(x), _plain(linear, x))


def test_an_input_hook_with_kwargs_sees_and_replaces_the_call(linear: nn.Linear) -> None:
    x = torch.randn(2, 4)
    seen: list[dict[str, Any]] = []

    def negated(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        seen.append(kwargs)
        return (-args[0],), kwargs

    with torch.no_grad(), registered(ModuleHook(linear, negated, on="input", with_kwargs=True)):
        torch.testing.assert_close(linear(x), _plain(linear, -x))
    assert seen == [{}] and _hook_count(linear) == 0


def test_hooks_are_removed_when_the_body_raises(linear: nn.Linear) -> None:
    with (
        pytest.raises(RuntimeError, match="body"),
        registered(
            ModuleHook(linear, lambda module, args, output: output + 1),
            ModuleHook(linear, lambda module, args: None, on="input"),
        ),
    ):
        assert _hook_count(linear) == 2
        raise RuntimeError("body")
    assert _hook_count(linear) == 0


def test_hooks_registered_before_a_failing_registration_are_removed(linear: nn.Linear) -> None:
    other = nn.Linear(3, 3)
    broken = ModuleHook(None, lambda module, args, output: output)  # type: ignore[arg-type]
    with (
        pytest.raises(AttributeError),
        registered(
            ModuleHook(linear, lambda module, args, output: output),
            broken,
            ModuleHook(other, print),
        ),
    ):
        pass
    assert _hook_count(linear) == 0 and _hook_count(other) == 0


def test_a_hook_may_remove_the_block_s_hooks_early(linear: nn.Linear) -> None:
    """As the shared generation's prefill does: the first call runs hooked, later calls plain."""
    x = torch.randn(2, 4)

    def once(module: nn.Module, args: Any, output: Tensor) -> Tensor:
        for handle in handles:
            handle.remove()
        return output + 1

    with torch.no_grad(), registered(ModuleHook(linear, once)) as handles:
        torch.testing.assert_close(linear(x), _plain(linear, x) + 1)
        torch.testing.assert_close(linear(x), _plain(linear, x))
    assert _hook_count(linear) == 0
