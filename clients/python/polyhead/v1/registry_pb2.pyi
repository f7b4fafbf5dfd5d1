from polyhead.v1 import inference_pb2 as _inference_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterHeadRequest(_message.Message):
    __slots__ = ("manifest_json", "safetensors", "activate")
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    SAFETENSORS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    manifest_json: bytes
    safetensors: bytes
    activate: bool
    def __init__(self, manifest_json: _Optional[bytes] = ..., safetensors: _Optional[bytes] = ..., activate: _Optional[bool] = ...) -> None: ...

class RegisterHeadResponse(_message.Message):
    __slots__ = ("task", "version", "activated")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    activated: bool
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., activated: _Optional[bool] = ...) -> None: ...

class Example(_message.Message):
    __slots__ = ("text", "label")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    text: str
    label: str
    def __init__(self, text: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class TrainOptions(_message.Message):
    __slots__ = ("head_kind", "seed", "max_epochs", "learning_rate", "weight_decay", "validation_fraction", "hidden_dim", "dropout", "adapt", "adapt_layers", "windows")
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_DIM_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    ADAPT_FIELD_NUMBER: _ClassVar[int]
    ADAPT_LAYERS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    head_kind: str
    seed: int
    max_epochs: int
    learning_rate: float
    weight_decay: float
    validation_fraction: float
    hidden_dim: int
    dropout: float
    adapt: str
    adapt_layers: _containers.RepeatedScalarFieldContainer[int]
    windows: str
    def __init__(self, head_kind: _Optional[str] = ..., seed: _Optional[int] = ..., max_epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., validation_fraction: _Optional[float] = ..., hidden_dim: _Optional[int] = ..., dropout: _Optional[float] = ..., adapt: _Optional[str] = ..., adapt_layers: _Optional[_Iterable[int]] = ..., windows: _Optional[str] = ...) -> None: ...

class TrainHeadRequest(_message.Message):
    __slots__ = ("task", "examples", "validation", "options", "activate", "min_validation_accuracy")
    TASK_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    MIN_VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    task: str
    examples: _containers.RepeatedCompositeFieldContainer[Example]
    validation: _containers.RepeatedCompositeFieldContainer[Example]
    options: TrainOptions
    activate: bool
    min_validation_accuracy: float
    def __init__(self, task: _Optional[str] = ..., examples: _Optional[_Iterable[_Union[Example, _Mapping]]] = ..., validation: _Optional[_Iterable[_Union[Example, _Mapping]]] = ..., options: _Optional[_Union[TrainOptions, _Mapping]] = ..., activate: _Optional[bool] = ..., min_validation_accuracy: _Optional[float] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("stage", "epoch", "done", "progress", "candidate")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    epoch: EpochReport
    done: TrainResult
    progress: StageProgress
    candidate: _inference_pb2.CandidateScore
    def __init__(self, stage: _Optional[str] = ..., epoch: _Optional[_Union[EpochReport, _Mapping]] = ..., done: _Optional[_Union[TrainResult, _Mapping]] = ..., progress: _Optional[_Union[StageProgress, _Mapping]] = ..., candidate: _Optional[_Union[_inference_pb2.CandidateScore, _Mapping]] = ...) -> None: ...

class StageProgress(_message.Message):
    __slots__ = ("stage", "done", "total", "elapsed_s")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    elapsed_s: float
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class EpochReport(_message.Message):
    __slots__ = ("epoch", "train_loss", "validation_loss", "validation_accuracy")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    def __init__(self, epoch: _Optional[int] = ..., train_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., validation_accuracy: _Optional[float] = ...) -> None: ...

class TrainResult(_message.Message):
    __slots__ = ("task", "version", "activated", "head_metrics", "baseline_metrics", "note")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    HEAD_METRICS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_METRICS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    activated: bool
    head_metrics: _inference_pb2.Metrics
    baseline_metrics: _inference_pb2.Metrics
    note: str
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ..., activated: _Optional[bool] = ..., head_metrics: _Optional[_Union[_inference_pb2.Metrics, _Mapping]] = ..., baseline_metrics: _Optional[_Union[_inference_pb2.Metrics, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class ActivateVersionRequest(_message.Message):
    __slots__ = ("task", "version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    version: int
    def __init__(self, task: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("task", "active_version")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    task: str
    active_version: int
    def __init__(self, task: _Optional[str] = ..., active_version: _Optional[int] = ...) -> None: ...

class DeleteTaskRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class DeleteTaskResponse(_message.Message):
    __slots__ = ("task", "versions_deleted")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_DELETED_FIELD_NUMBER: _ClassVar[int]
    task: str
    versions_deleted: int
    def __init__(self, task: _Optional[str] = ..., versions_deleted: _Optional[int] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "active", "created_at", "head_metrics", "baseline_metrics", "head_kind", "selection", "candidates", "adapted_layers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HEAD_METRICS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_METRICS_FIELD_NUMBER: _ClassVar[int]
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ADAPTED_LAYERS_FIELD_NUMBER: _ClassVar[int]
    version: int
    active: bool
    created_at: str
    head_metrics: _inference_pb2.Metrics
    baseline_metrics: _inference_pb2.Metrics
    head_kind: str
    selection: str
    candidates: _containers.RepeatedCompositeFieldContainer[_inference_pb2.CandidateScore]
    adapted_layers: int
    def __init__(self, version: _Optional[int] = ..., active: _Optional[bool] = ..., created_at: _Optional[str] = ..., head_metrics: _Optional[_Union[_inference_pb2.Metrics, _Mapping]] = ..., baseline_metrics: _Optional[_Union[_inference_pb2.Metrics, _Mapping]] = ..., head_kind: _Optional[str] = ..., selection: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[_inference_pb2.CandidateScore, _Mapping]]] = ..., adapted_layers: _Optional[int] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("task", "versions")
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    task: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    def __init__(self, task: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ...) -> None: ...
