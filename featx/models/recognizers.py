"""MMAction2's ``Recognizer2D``/``Recognizer3D`` in feature-extraction mode: backbone (+ neck) + pooling.

The same for both config dialects: a 1.x config's ``data_preprocessor`` is read by its dialect (the
device-side normalisation), never passed here; an argument a recognizer does not take is refused.

No head is built: a checkpoint's ``cls_head.*`` keys are unexpected for these models.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featx.errors import UserError
from featx.models.taps import POOLS, find_layer, output_of, pool_output
from featx.registry import MODELS


class Recognizer(nn.Module):
    """A backbone whose output is average-pooled per view, then averaged over the views.

    As MMAction2's ``_do_test`` with ``feature_extraction=True``: views are flattened into the
    batch, the backbone output (after the neck, if any) pooled to one value per channel (several
    ``out_indices`` outputs are pooled each and concatenated, as Recognizer3D does; an output that
    is already one row per view, as C3D's and TimeSformer's, is kept as it is), reshaped to
    (B, V, D) and averaged over V. ``test_cfg.max_testing_views`` runs the backbone on that many
    views at a time (same result, less memory); featx allows it with any batch size.

    A backbone that mixes neighbouring views (TSM's temporal shift) declares ``view_group``: the
    views of a video must then come in whole groups of that many, and chunks never split one.

    :meth:`tap` makes it give another module's output instead (``--layer``), pooled by ``--pool``.
    """

    view_ndim: ClassVar[int]  # dimensions of one view: (C, H, W) or (C, T, H, W)
    pool: ClassVar[Callable[[Tensor, int], Tensor]]

    def __init__(
        self,
        backbone: Mapping[str, Any],
        cls_head: Mapping[str, Any] | None = None,
        neck: Mapping[str, Any] | None = None,
        train_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        del cls_head, train_cfg  # the head and training settings play no part in features
        self.backbone = MODELS.build(backbone)
        self.neck = None if neck is None else self.build_neck(neck)
        views = (test_cfg or {}).get("max_testing_views")
        if views is not None and (isinstance(views, bool) or not isinstance(views, int) or views < 1):
            raise UserError(f"test_cfg.max_testing_views={views!r} must be a positive int or None")
        self.view_group: int = getattr(self.backbone, "view_group", 1)
        self.max_testing_views: int | None = None if views is None else max(1, views // self.view_group) * self.view_group
        self.layer: tuple[str, str] | None = None  # (module name, pooling): see tap()

    def tap(self, layer: str, pool: str = "avg") -> None:
        """Give module ``layer``'s output (``backbone.layer3``) per view, pooled as :mod:`featx.models.taps`
        says (``avg``, ``max``, or ``none``: each view's output flattened), instead of the pooled backbone."""
        if pool not in POOLS:
            raise UserError(f"--pool {pool}: use one of {', '.join(POOLS)}")
        find_layer(self, layer)
        self.layer = (layer, pool)

    def build_neck(self, neck: Mapping[str, Any]) -> nn.Module:
        """The neck between backbone and pooling (featx registers the ones that run at test time)."""
        if neck.get("type") not in MODELS:
            raise UserError(f"{type(self).__name__}: the {neck.get('type')} neck is not supported")
        return MODELS.build(neck)

    def forward_views(self, imgs: Tensor) -> Tensor:
        """(B, V, *view) -> (B, V, D): one pooled backbone feature per view."""
        if imgs.dim() != 2 + self.view_ndim:
            raise ValueError(
                f"{type(self).__name__} expects a {2 + self.view_ndim}-D input (batch, views, ...), "
                f"got shape {tuple(imgs.shape)}"
            )
        batches, views = imgs.shape[:2]
        if views % self.view_group:  # the config's sampling does not fit its backbone
            raise UserError(f"{views} views per video are not whole groups of {self.view_group}: "
                            f"{type(self.backbone).__name__} mixes each group of {self.view_group} views "
                            f"(its num_segments), so sample a multiple of {self.view_group} clips")
        flat = imgs.reshape((batches * views,) + imgs.shape[2:])
        chunks = flat.split(self.max_testing_views or flat.shape[0])
        return torch.cat([self._pooled(chunk) for chunk in chunks]).reshape(batches, views, -1)

    def forward(self, imgs: Tensor) -> Tensor:
        """(B, V, *view) -> (B, D): the view features averaged."""
        return self.forward_views(imgs).mean(1)

    def features(self, x: Tensor) -> Any:
        """The backbone's (and neck's) output for a batch of views."""
        out = self.backbone(x)
        return out if self.neck is None else self.neck(out)

    def _pooled(self, x: Tensor) -> Tensor:
        if self.layer is not None:
            name, pool = self.layer
            return pool_output(output_of(self, name, lambda: self.features(x)), pool)
        out = self.features(x)
        outs = out if isinstance(out, tuple) else (out,)
        return torch.cat([o if o.dim() == 2 else self.pool(o, 1).flatten(1) for o in outs], dim=1)


@MODELS.register()
class Recognizer2D(Recognizer):
    """Input (B, V, C, H, W); features pooled over space."""

    view_ndim = 3
    pool = staticmethod(F.adaptive_avg_pool2d)

    def build_neck(self, neck: Mapping[str, Any]) -> nn.Module:
        if neck.get("type") == "TPN":  # MMAction2 tests TPN-on-TSM with fcn_test, which asserts no feature extraction
            raise UserError("Recognizer2D: the TPN neck is not supported: MMAction2 0.x cannot extract features "
                            "with TPN on a 2D backbone")
        return super().build_neck(neck)


@MODELS.register()
class Recognizer3D(Recognizer):
    """Input (B, V, C, T, H, W); features pooled over time and space."""

    view_ndim = 4
    pool = staticmethod(F.adaptive_avg_pool3d)


@MODELS.register()
class RecognizerOmni(Recognizer3D):
    """1.x's OmniSource recognizer on videos: (B, V, C, T, H, W) through the backbone and pooled over time and
    space, as 1.x's test mode does (its image path, 4-D input, serves training). It takes a backbone and a
    head only, as 1.x's does (its ``data_preprocessor`` is the dialect's)."""

    def __init__(self, backbone: Mapping[str, Any], cls_head: Mapping[str, Any] | None = None) -> None:
        super().__init__(backbone, cls_head)
