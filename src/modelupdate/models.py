"""Architecture registry: small CNNs for the CPU and torchvision families.

Every factory takes ``(num_classes, input_shape, **arch_args)`` and returns an
``nn.Module`` mapping float ``[B, C, H, W]`` to logits ``[B, num_classes]``.
Its name and ``arch_args`` are stored in the checkpoint so the model rebuilds
itself from the file alone.

Three ways to name an architecture:
- a registered name (``cnn-m``, ``resnet18``: the torchvision family with a small-input stem by default);
- a torchvision classification builder by its path, ``torchvision.models:resnet18``, called with its own
  keyword arguments (``weights`` included, from torch's local cache only: nothing is downloaded);
- ``package.module:factory``, any factory of the user's own code; a checkpoint may name one only in a
  module the user allowed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from .errors import CheckpointError, ConfigError, ModelUpdateWarning, UntrustedCodeError

Factory = Callable[..., nn.Module]
ARCHS: dict[str, tuple[Factory, str]] = {}
# Modules (comma-separated) whose factories a checkpoint may name; the CLI's --allow-arch-module adds to it.
ARCH_MODULES_ENV = "MODELUPDATE_ARCH_MODULES"
TORCHVISION_PREFIX = "torchvision.models:"
# Arguments that only initialise a model (pretrained weights): a checkpoint's own weights replace them, so
# they are not stored in its arch_args and rebuilding needs no weight file.
INIT_ONLY_ARGS = ("weights",)
# package.module:factory, each part a Python identifier
_FACTORY_SPEC = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*:[^\W\d]\w*")


def register(name: str, summary: str):
    def wrap(fn: Factory) -> Factory:
        ARCHS[name] = (fn, summary)
        return fn

    return wrap


def known_archs() -> list[str]:
    return sorted(ARCHS)


def build_model(arch: str, num_classes: int, input_shape: tuple[int, int, int],
                arch_args: dict[str, Any] | None = None) -> nn.Module:
    """Build ``arch`` (a registered name, ``torchvision.models:<builder>`` or ``package.module:factory``).

    Imports a module only for an ``arch`` the caller vouches for: one from the command line, or one that
    ``check_arch_allowed`` let through for a file.
    """
    args = dict(arch_args or {})
    if arch in ARCHS:
        factory = ARCHS[arch][0]
    elif is_torchvision_builder(arch):
        factory = _torchvision_factory(arch[len(TORCHVISION_PREFIX):])
    elif arch.split(".", 1)[0].split(":", 1)[0] == "torchvision":
        raise ConfigError(f"--arch {arch}: not one of torchvision's classification builders; expected "
                          f"{TORCHVISION_PREFIX}<name> with a name from torchvision.models.list_models("
                          f"module=torchvision.models)")
    elif ":" in arch:
        factory = _import_factory(arch)
    else:
        raise ConfigError(f"--arch: unknown architecture {arch!r}; known: {', '.join(known_archs())}, "
                          f"{TORCHVISION_PREFIX}<builder> or package.module:factory")
    _check_arch_args(arch, factory, args)
    try:
        # torch's own UserWarnings while building (e.g. "Initializing zero-element tensors is a no-op") are
        # noise on the terminal: what they point at is refused below in one line; ours pass through
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = factory(**_shape_args(factory, num_classes, input_shape), **args)
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:  # e.g. a negative width
        raise ConfigError(f"--arch-args: {arch} cannot be built with {args} ({str(exc).splitlines()[0]})") from None
    for warning in caught:
        if not issubclass(warning.category, UserWarning) or issubclass(warning.category, ModelUpdateWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    empty = next(((name, list(t.shape)) for name, t in _tensors_of(model) if t.numel() == 0), None)
    if empty is not None:  # width 0, or inputs too small for the layers sized from them
        given = f" --arch-args {json.dumps(args, default=repr)}" if args else ""
        raise ConfigError(f"--arch {arch}{given}: for inputs of shape {list(input_shape)} it has a parameter with no "
                          f"elements ({empty[0]} {empty[1]}); expected positive sizes (larger arguments or inputs)")
    return model


def _tensors_of(model: Any) -> list[tuple[str, torch.Tensor]]:
    """Parameters, named (an empty buffer may be a placeholder); none for a factory that returned something
    else (check_forward says so)."""
    return list(model.named_parameters()) if isinstance(model, nn.Module) else []


def without_init_args(arch_args: dict[str, Any]) -> dict[str, Any]:
    """``arch_args`` without the initialisation-only ones (pretrained weights: a checkpoint's replace them)."""
    return {k: v for k, v in arch_args.items() if k not in INIT_ONLY_ARGS}


def stored_arch_args(arch: str, arch_args: dict[str, Any]) -> dict[str, Any]:
    """The arguments a checkpoint keeps to rebuild its model: all but the initialisation-only ones, and
    for a registered torchvision family built from pretrained weights the stem that "auto" chose then
    (without the weights, "auto" would choose another for small inputs)."""
    stored = without_init_args(arch_args)
    if arch_args.get("weights") is not None and arch in ARCHS and arch_args.get("stem", "auto") == "auto" \
            and "stem" in inspect.signature(ARCHS[arch][0]).parameters:
        stored["stem"] = "standard"
    return stored


def _shape_args(factory: Factory, num_classes: int, input_shape: tuple) -> dict[str, Any]:
    """``num_classes`` always; ``input_shape`` only to a factory that names it (a user's factory or a
    library builder may not take it)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {"num_classes": num_classes, "input_shape": tuple(input_shape)}
    if "input_shape" in params:
        return {"num_classes": num_classes, "input_shape": tuple(input_shape)}
    return {"num_classes": num_classes}


def is_torchvision_builder(arch: str) -> bool:
    """``torchvision.models:<name>`` naming one of torchvision's own classification builders: library code
    this tool already runs, so a checkpoint may name it without ``--allow-arch-module``."""
    if not arch.startswith(TORCHVISION_PREFIX):
        return False
    import torchvision

    return arch[len(TORCHVISION_PREFIX):] in torchvision.models.list_models(module=torchvision.models)


def allowed_arch_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(ARCH_MODULES_ENV, "").split(",") if m.strip()]


def check_arch_allowed(arch: str, source: str) -> None:
    """A file may name a registered architecture, or a factory inside a module the user allowed; never
    import code a file names otherwise (a checkpoint from a pull request must not run code)."""
    if arch in ARCHS or ":" not in arch or is_torchvision_builder(arch):  # unknown: build_model says so
        return
    module = arch.partition(":")[0]
    if any(module == m or module.startswith(m + ".") for m in allowed_arch_modules()):
        return
    raise UntrustedCodeError(f"{source} names code module {module!r} (arch {arch!r}); pass --allow-arch-module "
                             f"{module} if you trust it")


def _is_json_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_json_value(v) and not isinstance(v, list) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _check_arch_args(arch: str, factory: Factory, args: dict[str, Any]) -> None:
    """Architecture arguments are JSON scalars or lists of them, named in the factory's signature."""
    for key, value in args.items():
        if not _is_json_value(value):
            raise ConfigError(f"--arch-args: {key!r} = {value!r}: expected a number, string, boolean or a list "
                              f"of them")
        if isinstance(value, float) and value != value:
            raise ConfigError(f"--arch-args: {key!r} is NaN")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: the call itself checks
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(args) - set(params) - {"num_classes", "input_shape"})
    reserved = sorted(set(args) & {"num_classes", "input_shape"})
    if unknown or reserved:
        accepted = [n for n in params if n not in ("num_classes", "input_shape")]
        raise ConfigError(f"--arch-args: {arch} takes no argument {', '.join(map(repr, unknown + reserved))}; "
                          f"it takes {', '.join(accepted) or 'none'}")


def _import_factory(spec: str) -> Factory:
    if not _FACTORY_SPEC.fullmatch(spec):  # e.g. ':' or 'pkg:' would reach importlib as an empty name
        raise ConfigError(f"--arch {spec!r}: expected a registered name, {TORCHVISION_PREFIX}<builder> or "
                          f"package.module:factory (Python names)")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--arch {spec}: cannot import module {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"--arch {spec}: {module_name!r} has no callable {attr!r}")
    return factory


# --------------------------------------------------------------------------- small CNNs


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """VGG-style CNN: stages of 3x3 conv-BN-ReLU blocks with 2x2 max-pool after each stage but the
    last (or after every stage with ``pool_last``), then a head: global average pooling + linear
    (``hidden=0``), or flatten + one hidden layer (keeps where a feature is; cheap at 7x7)."""

    def __init__(self, num_classes: int, input_shape: tuple, widths: list[list[int]], hidden: int = 0,
                 dropout: float = 0.0, pool_last: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = input_shape[0], (input_shape[1], input_shape[2])
        for i, stage in enumerate(widths):
            for cout in stage:
                layers += _conv_bn(cin, cout)
                cin = cout
            if i < len(widths) - 1 or pool_last:
                layers.append(nn.MaxPool2d(2))
                size = (size[0] // 2, size[1] // 2)
        self.features = nn.Sequential(*layers)
        if hidden > 0:
            self.head = nn.Sequential(
                nn.Flatten(), nn.Linear(cin * size[0] * size[1], hidden), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                      nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("cnn-s", "2 stages (16, 32) + 64-unit head, ~0.1M params; fast, weak: the typical 'old' model")
def cnn_s(num_classes: int, input_shape: tuple, width: int = 16, hidden: int = 64) -> nn.Module:
    # a small flatten head at 7x7: a global-pooling head at this width underfits (docs/results.md)
    return SmallCNN(num_classes, input_shape, [[width], [2 * width]], hidden=hidden, pool_last=True)


@register("cnn-m", "3 stages (16, 32x2, 64) + 128-unit head, ~0.4M params; clearly stronger than cnn-s")
def cnn_m(num_classes: int, input_shape: tuple, width: int = 16, hidden: int = 128, dropout: float = 0.25) -> nn.Module:
    # capacity where it is cheap on a CPU: at 7x7, in the flatten head (docs/results.md)
    return SmallCNN(num_classes, input_shape, [[width], [2 * width, 2 * width], [4 * width]], hidden=hidden,
                    dropout=dropout)


@register("tiny", "one 8-channel conv; for tests only")
def tiny(num_classes: int, input_shape: tuple, width: int = 8) -> nn.Module:
    return SmallCNN(num_classes, input_shape, [[width]])


# --------------------------------------------------------------------------- torchvision


def _small(input_shape: tuple) -> bool:
    return max(input_shape[1], input_shape[2]) <= 64


def _replace_conv(conv: nn.Conv2d, in_channels: int, kernel: int | None = None, stride: int | None = None) -> nn.Conv2d:
    k = kernel if kernel is not None else conv.kernel_size[0]
    s = stride if stride is not None else conv.stride[0]
    return nn.Conv2d(in_channels, conv.out_channels, k, stride=s, padding=k // 2 if k > 1 else 0,
                     bias=conv.bias is not None)


def resolve_weights(builder: str, weights: str):
    """torchvision's weights enum for ``weights`` ("DEFAULT", "IMAGENET1K_V1" or "ResNet18_Weights.IMAGENET1K_V1"),
    only when the file is in torch's local cache: this tool never downloads."""
    import torchvision

    if not isinstance(weights, str):
        raise ConfigError(f"--arch-args: weights {weights!r} for {builder}: expected the name of torchvision "
                          f"weights as a string, e.g. \"DEFAULT\" or \"IMAGENET1K_V1\"")
    enum = torchvision.models.get_model_weights(builder)
    name = weights.rsplit(".", 1)[-1] if weights.startswith(enum.__name__ + ".") else weights
    try:
        chosen = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ConfigError(f"--arch-args: weights {weights!r} unknown for {builder}; it has "
                          f"{', '.join(['DEFAULT', *(w.name for w in enum)])}") from None
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urllib.parse.urlparse(chosen.url).path))
    if not os.path.isfile(cached):
        raise ConfigError(f"--arch-args: weights {weights!r} of {builder} are not in torch's cache ({cached}) and "
                          f"modelupdate never downloads; copy {chosen.url} there, or bring trained weights in "
                          f"with `modelupdate import --weights`")
    return chosen


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Give a pretrained classifier a fresh last linear layer with ``num_classes`` outputs."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"--arch-args: {type(model).__name__} has no linear layer to give {num_classes} outputs")
    name, last = linears[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Linear(last.in_features, num_classes, bias=last.bias is not None))


def _torchvision(builder: str, num_classes: int, weights: str | None = None, **kw: Any) -> nn.Module:
    """torchvision's ``builder`` with its own keyword arguments; with ``weights``, the pretrained model with a
    new ``num_classes`` head where its class count differs."""
    import torchvision

    build = torchvision.models.get_model_builder(builder)
    if weights is None:
        return build(weights=None, num_classes=num_classes, **kw)
    chosen = resolve_weights(builder, weights)
    model = build(weights=chosen, **kw)
    if len(chosen.meta["categories"]) != num_classes:
        replace_head(model, num_classes)
    return model


def _torchvision_factory(builder: str) -> Factory:
    def factory(num_classes: int, weights: str | None = None, **kw: Any) -> nn.Module:
        return _torchvision(builder, num_classes, weights, **kw)

    return factory


STEMS = ("auto", "small", "standard")


def _small_stem(stem: str, input_shape: tuple, weights: str | None) -> bool:
    """Whether to adapt the stem to small inputs: "auto" does for inputs <= 64 px unless pretrained
    weights are loaded (their stem would be thrown away)."""
    if stem not in STEMS:
        raise ConfigError(f"--arch-args: stem must be one of {', '.join(STEMS)}, got {stem!r}")
    return stem == "small" or (stem == "auto" and weights is None and _small(input_shape))


def _resnet(name: str):
    def factory(num_classes: int, input_shape: tuple, stem: str = "auto", weights: str | None = None,
                **kw: Any) -> nn.Module:
        model = _torchvision(name, num_classes, weights, **kw)
        if _small_stem(stem, input_shape, weights):  # CIFAR-style stem: 3x3 stride 1, no max-pool
            model.conv1 = _replace_conv(cast(nn.Conv2d, model.conv1), input_shape[0], kernel=3, stride=1)
            model.maxpool = nn.Identity()
        elif input_shape[0] != 3:
            model.conv1 = _replace_conv(cast(nn.Conv2d, model.conv1), input_shape[0])
        return model

    return factory


def _features_stem(name: str, small_kernel: int | None, small_stride: int):
    def factory(num_classes: int, input_shape: tuple, stem: str = "auto", weights: str | None = None,
                **kw: Any) -> nn.Module:
        model = _torchvision(name, num_classes, weights, **kw)
        first = cast(nn.Sequential, cast(nn.Sequential, model.features)[0])  # the stem: conv, norm, activation
        conv = cast(nn.Conv2d, first[0])
        if _small_stem(stem, input_shape, weights):
            first[0] = _replace_conv(conv, input_shape[0], kernel=small_kernel, stride=small_stride)
        elif input_shape[0] != 3:
            first[0] = _replace_conv(conv, input_shape[0])
        return model

    return factory


for _name in ("resnet18", "resnet34", "resnet50"):
    register(_name, f"torchvision {_name}; 3x3 stride-1 stem without max-pool for inputs <= 64 px (stem=standard: "
                    f"torchvision's own)")(_resnet(_name))
register("mobilenet_v3_small", "torchvision mobilenet_v3_small; stride-1 stem for small inputs")(
    _features_stem("mobilenet_v3_small", None, 1))
register("efficientnet_b0", "torchvision efficientnet_b0; stride-1 stem for small inputs")(
    _features_stem("efficientnet_b0", None, 1))
register("convnext_tiny", "torchvision convnext_tiny; 1x1 stride-1 patchify stem for small inputs")(
    _features_stem("convnext_tiny", 1, 1))


def check_forward(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, arch: str,
                  modes: tuple[str, ...] = ("eval", "training")) -> None:
    """Two zero inputs must give [2, num_classes] finite logits, in eval mode and in training mode (where some
    torchvision models return auxiliary outputs): a model that cannot run on the data fails before training,
    in one line. The model's mode is restored; its batch-norm statistics are those of a throwaway model."""
    was_training = model.training
    try:
        for mode in modes:
            model.train(mode == "training")
            try:
                with torch.no_grad():
                    logits = model(torch.zeros(2, *input_shape))
            except Exception as exc:  # torch's shape errors are RuntimeError, ViT's an AssertionError
                raise ConfigError(f"--arch {arch}: cannot run on inputs of shape {list(input_shape)} "
                                  f"({str(exc).splitlines()[0][:200]})") from None
            if not torch.is_tensor(logits) or tuple(logits.shape) != (2, num_classes):
                got = list(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
                raise ConfigError(f"--arch {arch}: gives {got} for 2 inputs in {mode} mode; expected a tensor of "
                                  f"[2, {num_classes}] logits (one per class)")
            if not bool(torch.isfinite(logits).all()):
                raise ConfigError(f"--arch {arch}: gives non-finite logits (NaN or Inf in the weights?)")
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- weights read from a file


def expected_state(arch: str, num_classes: int, input_shape: tuple[int, int, int], arch_args: dict[str, Any]
                   ) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor in the state dict of the model ``build_model`` would build,
    from a model built on torch's "meta" device: nothing is allocated, however large the arguments make it.
    Raises ConfigError when the architecture cannot be built with these arguments."""
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG alone
        try:
            with torch.device("meta"):
                model = build_model(arch, num_classes, input_shape, arch_args)
        except ConfigError:
            raise
        except Exception:  # a factory that cannot build on "meta" (its own tensor code): build it for real
            model = build_model(arch, num_classes, input_shape, arch_args)
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def fit_problem(state: dict[str, torch.Tensor], expected: dict[str, tuple[tuple[int, ...], torch.dtype]]
                ) -> str | None:
    """Why ``state`` cannot fill a model whose tensors are ``expected`` (``expected_state``), or None:
    missing, unexpected or differently shaped tensors (the header alone tells)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for label, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            return f"{label} tensor {names[0]!r}{more}"
    for name, (shape, _) in expected.items():
        if tuple(state[name].shape) != shape:
            return f"size mismatch for {name}: {list(state[name].shape)} in the file, {list(shape)} in the " \
                   f"architecture"
    return None


def weights_problem(state: dict[str, torch.Tensor], expected: dict[str, tuple[tuple[int, ...], torch.dtype]]
                    ) -> str | None:
    """Why the values of ``state`` (fitting ``expected`` by name and shape) are no model's weights, or
    None: a dtype of another kind (bool or integer weights where the model holds floats, which copying
    would convert silently), then NaN or Inf."""
    for name, (_, dtype) in expected.items():
        got = state[name].dtype
        shown = str(got).removeprefix("torch.")
        if dtype.is_floating_point and not got.is_floating_point:
            return f"tensor {name!r} has dtype {shown}; expected floating-point weights"
        if not dtype.is_floating_point and (got.is_floating_point or got.is_complex or got == torch.bool):
            return f"tensor {name!r} has dtype {shown}; expected integers"
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"tensor {name!r} holds NaN or Inf; expected finite weights"
    return None


def check_state(source: str, arch: str, num_classes: int, input_shape: tuple[int, int, int],
                arch_args: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming ``source`` unless ``state`` fits the model ``build_model`` would build,
    by names, shapes, dtypes and finite values: known before that model is built for real, so metadata that
    asks for billions of parameters beside a few kilobytes of weights costs nothing."""
    try:
        expected = expected_state(arch, num_classes, input_shape, arch_args)
    except Exception as exc:
        raise CheckpointError(f"{source}: cannot rebuild architecture {arch!r} ({exc})") from None
    problem = fit_problem(state, expected)
    if problem:
        implied, held = sum(math.prod(shape) for shape, _ in expected.values()), sum(v.numel() for v in state.values())
        counts = f" (its metadata implies {implied:,} numbers, the file holds {held:,})" if implied != held else ""
        raise CheckpointError(f"{source}: weights do not fit architecture {arch!r} with {num_classes} classes: "
                              f"{problem}{counts}")
    problem = weights_problem(state, expected)
    if problem:
        raise CheckpointError(f"{source}: {problem}")


def check_first_logits(model: nn.Module, source: str) -> None:
    """Refuse, naming ``source``, a model whose first call on finite inputs gives NaN or Inf (finite weights
    can still overflow): a hook checks that one output, then removes itself, so later calls cost nothing.
    A copy of the model (an ensemble's vmapped forward runs one) shares the hook's state: it runs once."""
    done = [False]

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        if done[0]:
            return
        done[0] = True
        handle.remove()
        if not (torch.is_tensor(output) and output.is_floating_point()):
            return
        try:
            inputs_finite = all(bool(torch.isfinite(a).all()) for a in args if torch.is_tensor(a))
            finite = bool(torch.isfinite(output).all())
        except RuntimeError:  # under torch.vmap the values cannot be read: left unchecked
            return
        if inputs_finite and not finite:  # NaN inputs: not the file's fault
            raise CheckpointError(f"{source}: gives NaN or Inf logits on the first batch it is run on; expected "
                                  f"finite logits (are its weights too large?)")

    handle = model.register_forward_hook(hook)


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the train-time drop probability of every dropout layer (``nn.Dropout*`` and torchvision's
    ``StochasticDepth``) in ``model`` to ``p``; returns how many layers were set. Eval mode is unchanged."""
    from torchvision.ops import StochasticDepth

    count = 0
    for module in model.modules():
        if isinstance(module, (nn.modules.dropout._DropoutNd, StochasticDepth)):
            module.p = p
            count += 1
    return count


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
