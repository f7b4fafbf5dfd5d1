from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("task", "texts", "top_k", "images")
    TASK_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    task: str
    texts: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, task: _Optional[str] = ..., texts: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("label", "score", "scores")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    scores: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., scores: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("task", "head_version", "results")
    TASK_FIELD_NUMBER: _ClassVar[int]
    HEAD_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    task: str
    head_version: int
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, task: _Optional[str] = ..., head_version: _Optional[int] = ..., results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class ClassifyMultiRequest(_message.Message):
    __slots__ = ("tasks", "texts", "top_k", "images")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedScalarFieldContainer[str]
    texts: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, tasks: _Optional[_Iterable[str]] = ..., texts: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ClassifyMultiResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[ClassifyResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[ClassifyResponse, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "images")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("dim", "embeddings")
    DIM_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    dim: int
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, dim: _Optional[int] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task", "active_version", "labels", "head_kind")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    task: str
    active_version: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    head_kind: str
    def __init__(self, task: _Optional[str] = ..., active_version: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., head_kind: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "n")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MACRO_PRECISION_FIELD_NUMBER: _ClassVar[int]
    MACRO_RECALL_FIELD_NUMBER: _ClassVar[int]
    MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    n: int
    def __init__(self, accuracy: _Optional[float] = ..., macro_precision: _Optional[float] = ..., macro_recall: _Optional[float] = ..., macro_f1: _Optional[float] = ..., n: _Optional[int] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task", "labels", "active_version", "versions", "head_kind", "head_metrics", "baseline_metrics", "backbone_fingerprint", "created_at", "selection", "candidates", "adapted_layers")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    HEAD_METRICS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_METRICS_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ADAPTED_LAYERS_FIELD_NUMBER: _ClassVar[int]
    task: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    active_version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    head_kind: str
    head_metrics: Metrics
    baseline_metrics: Metrics
    backbone_fingerprint: str
    created_at: str
    selection: str
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateScore]
    adapted_layers: int
    def __init__(self, task: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., active_version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., head_kind: _Optional[str] = ..., head_metrics: _Optional[_Union[Metrics, _Mapping]] = ..., baseline_metrics: _Optional[_Union[Metrics, _Mapping]] = ..., backbone_fingerprint: _Optional[str] = ..., created_at: _Optional[str] = ..., selection: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[CandidateScore, _Mapping]]] = ..., adapted_layers: _Optional[int] = ...) -> None: ...

class CandidateScore(_message.Message):
    __slots__ = ("name", "accuracy", "log_loss", "layers", "cost_us")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    COST_US_FIELD_NUMBER: _ClassVar[int]
    name: str
    accuracy: float
    log_loss: float
    layers: int
    cost_us: float
    def __init__(self, name: _Optional[str] = ..., accuracy: _Optional[float] = ..., log_loss: _Optional[float] = ..., layers: _Optional[int] = ..., cost_us: _Optional[float] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("backbone", "dim", "fingerprint", "max_seq_length", "device", "dtype", "server_version", "backend", "input")
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    backbone: str
    dim: int
    fingerprint: str
    max_seq_length: int
    device: str
    dtype: str
    server_version: str
    backend: str
    input: str
    def __init__(self, backbone: _Optional[str] = ..., dim: _Optional[int] = ..., fingerprint: _Optional[str] = ..., max_seq_length: _Optional[int] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., server_version: _Optional[str] = ..., backend: _Optional[str] = ..., input: _Optional[str] = ...) -> None: ...
