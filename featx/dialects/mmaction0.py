"""MMAction2 0.x configs: ``data.test.pipeline``, ``data.videos_per_gpu``, ``module_hooks``, ``fp16``,
``dist_params``, ``cudnn_benchmark``."""
from __future__ import annotations

from typing import Any, Mapping

from mmengine.config import Config

from featx.config import Dialect, ExtractionConfig, LoaderSettings, model_dict, raw_frame_pipeline
from featx.data.transforms import GPUNormalize
from featx.errors import UserError
from featx.registry import DIALECTS, TRANSFORMS


@DIALECTS.register("0.x")
class MMAction0(Dialect):
    """As the reference does, ``model.test_cfg.feature_extraction`` is forced on (it only switches the
    reference's recognizer to features, which featx's always give)."""

    name = "0.x"
    shape = "data.test.pipeline"
    optional_sections = ("data.test_dataloader", "model.test_cfg", "dist_params", "fp16")

    @staticmethod
    def recognizes(cfg: Config) -> bool:
        data = cfg.get("data")
        return isinstance(data, Mapping) and "test" in data

    def read(self, cfg: Config, path: str) -> ExtractionConfig:
        test = cfg.data.test
        pipeline = test.get("pipeline") if isinstance(test, Mapping) else None
        if not isinstance(pipeline, list) or not pipeline:
            raise UserError(f"config {path} has no 'data.test.pipeline' list")
        raw = raw_frame_pipeline(test, pipeline, "data.test")
        model = model_dict(cfg.model)
        model["test_cfg"] = {**(model.get("test_cfg") or {}), "feature_extraction": True}
        return ExtractionConfig(
            path=path, dialect=self.name, model=model, pipeline=raw or [dict(s) for s in pipeline],
            pipeline_key="data.test.pipeline", transforms=TRANSFORMS,
            normalize=GPUNormalize.from_module_hooks(cfg.get("module_hooks")), loader=self._loader(cfg.data),
            fp16=cfg.get("fp16") is not None, dist_backend=(cfg.get("dist_params") or {}).get("backend"),
            cudnn_benchmark=bool(cfg.get("cudnn_benchmark", False)), raw_frames=raw is not None, source=cfg)

    @staticmethod
    def _loader(data: Mapping[str, Any]) -> LoaderSettings:
        """The reference's defaults, then ``data``'s, then ``data.test_dataloader``'s."""
        merged = {"videos_per_gpu": data.get("videos_per_gpu", 1), "workers_per_gpu": data.get("workers_per_gpu", 1)}
        merged.update({k: v for k, v in (data.get("test_dataloader") or {}).items() if k in merged})
        return LoaderSettings(**{k: int(v) for k, v in merged.items()})
