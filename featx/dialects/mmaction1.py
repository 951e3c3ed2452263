"""MMAction2 1.x (mmengine-style) configs: ``test_dataloader.dataset.pipeline`` (or, for a
``ConcatDataset``, its first dataset's), ``model.data_preprocessor`` (normalisation on the device),
``test_dataloader.batch_size``/``num_workers``, ``test_cfg`` (the test loop), ``env_cfg``."""
from __future__ import annotations

from typing import Any, Mapping

from mmengine.config import Config

from featx.config import Dialect, ExtractionConfig, LoaderSettings, model_dict, raw_frame_pipeline
from featx.errors import UserError
from featx.registry import DIALECTS, TRANSFORMS_1X

DATASET = "test_dataloader.dataset"


@DIALECTS.register("1.x")
class MMAction1(Dialect):
    """Its steps are built from ``TRANSFORMS_1X``: 1.x's own ``SampleFrames``, ``UniformSample``,
    ``UntrimmedSampleFrames``, ``PackActionInputs``, and 0.x's where they did not change."""

    name = "1.x"
    shape = f"{DATASET}.pipeline and model.data_preprocessor"
    optional_sections = ("model.test_cfg", "test_cfg", "env_cfg", "env_cfg.dist_cfg")

    @staticmethod
    def recognizes(cfg: Config) -> bool:
        loader = cfg.get("test_dataloader")
        model = cfg.get("model")
        return (isinstance(loader, Mapping) and "dataset" in loader) or (
            isinstance(model, Mapping) and "data_preprocessor" in model)

    def read(self, cfg: Config, path: str) -> ExtractionConfig:
        loader = cfg.get("test_dataloader")
        if not isinstance(loader, Mapping) or not isinstance(loader.get("dataset"), Mapping):
            raise UserError(f"config {path} has no '{DATASET}' dict")
        dataset, where, notes = loader["dataset"], DATASET, ()
        if dataset.get("type") == "ConcatDataset":
            parts = dataset.get("datasets") or []
            if not parts or not isinstance(parts[0], Mapping):
                raise UserError(f"config {path}: {DATASET} is a ConcatDataset without datasets")
            dataset, where = parts[0], f"{DATASET}.datasets.0"
            notes = (f"its test set is a ConcatDataset of {len(parts)}: the first one's pipeline ({where})",)
        pipeline = dataset.get("pipeline")
        if not isinstance(pipeline, list) or not pipeline:
            raise UserError(f"config {path} has no '{where}.pipeline' list")
        raw = raw_frame_pipeline(dataset, pipeline, where)
        model = model_dict(cfg.model)
        preprocessor = model.pop("data_preprocessor", None) or {"type": "ActionDataPreprocessor"}
        steps = raw or [dict(s) for s in pipeline]
        normalize = TRANSFORMS_1X.build(preprocessor)
        normalize.check_layout(steps)
        env = cfg.get("env_cfg") or {}
        return ExtractionConfig(
            path=path, dialect=self.name, model=model, pipeline=steps, pipeline_key=f"{where}.pipeline",
            transforms=TRANSFORMS_1X, normalize=normalize, loader=self._loader(loader),
            fp16=bool((cfg.get("test_cfg") or {}).get("fp16", False)),
            dist_backend=(env.get("dist_cfg") or {}).get("backend"), cudnn_benchmark=bool(env.get("cudnn_benchmark")),
            raw_frames=raw is not None, recorded={"model.data_preprocessor": preprocessor}, notes=notes, source=cfg)

    @staticmethod
    def _loader(loader: Mapping[str, Any]) -> LoaderSettings:
        return LoaderSettings(int(loader.get("batch_size", 1)), int(loader.get("num_workers", 1)))
