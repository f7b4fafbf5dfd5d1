"""A thin typed client for polyhead's gRPC API.

>>> from polyhead_client import Client
>>> with Client("127.0.0.1:50051") as c:
...     c.classify("spam", ["Lunch at noon?"])[0].label
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import grpc

from polyhead.v1 import inference_pb2, inference_pb2_grpc, registry_pb2, registry_pb2_grpc

__all__ = [
    "Client",
    "Prediction",
    "TaskSummary",
    "TaskInfo",
    "TrainEvent",
    "PolyheadError",
]


class PolyheadError(Exception):
    """A call that failed: `code` is the gRPC code's name (`NOT_FOUND`, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """One text's answer from one head."""

    task: str
    head_version: int
    label: str
    score: float
    scores: Dict[str, float]


@dataclass(frozen=True)
class TaskSummary:
    task: str
    active_version: int
    labels: List[str]
    head_kind: str


@dataclass(frozen=True)
class TaskInfo:
    task: str
    labels: List[str]
    active_version: int
    versions: List[int]
    head_kind: str
    head_accuracy: Optional[float]
    baseline_accuracy: Optional[float]
    selection: str


@dataclass(frozen=True)
class TrainEvent:
    """One TrainHead progress message: `kind` is stage, progress, candidate, epoch or done."""

    kind: str
    stage: str = ""
    done: int = 0
    total: int = 0
    name: str = ""
    accuracy: float = 0.0
    version: int = 0
    activated: bool = False
    details: Dict[str, float] = field(default_factory=dict)


def _error(e: grpc.RpcError) -> PolyheadError:
    code = e.code() if hasattr(e, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = e.details() if hasattr(e, "details") else str(e)
    return PolyheadError(name, details or "")


class Client:
    """A connection to one polyhead server (gRPC, plaintext or TLS)."""

    def __init__(
        self,
        addr: str = "127.0.0.1:50051",
        token: Optional[str] = None,
        timeout: float = 30.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
    ):
        self._channel = (
            grpc.secure_channel(addr, credentials)
            if credentials is not None
            else grpc.insecure_channel(addr)
        )
        self._inference = inference_pb2_grpc.InferenceStub(self._channel)
        self._registry = registry_pb2_grpc.RegistryStub(self._channel)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout: Optional[float] = None):
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:  # every failure is a PolyheadError with its code
            raise _error(e) from None

    @staticmethod
    def _predictions(r) -> List[Prediction]:
        return [
            Prediction(
                task=r.task,
                head_version=r.head_version,
                label=c.label,
                score=c.score,
                scores={s.label: s.score for s in c.scores},
            )
            for c in r.results
        ]

    def classify(
        self, task: str, texts: Sequence[str] = (), top_k: int = 0, images: Sequence[bytes] = ()
    ) -> List[Prediction]:
        """One prediction per text (or per picture: JPEG, PNG or WebP bytes, for a
        server on an image backbone), in order, from `task`'s active head."""
        r = self._call(
            self._inference.Classify,
            inference_pb2.ClassifyRequest(
                task=task, texts=list(texts), images=list(images), top_k=top_k
            ),
        )
        return self._predictions(r)

    def classify_multi(
        self,
        texts: Sequence[str] = (),
        tasks: Sequence[str] = (),
        top_k: int = 0,
        images: Sequence[bytes] = (),
    ) -> Dict[str, List[Prediction]]:
        """Every named task (all live tasks when none), after one backbone pass."""
        r = self._call(
            self._inference.ClassifyMulti,
            inference_pb2.ClassifyMultiRequest(
                tasks=list(tasks), texts=list(texts), images=list(images), top_k=top_k
            ),
        )
        return {resp.task: self._predictions(resp) for resp in r.responses}

    def embed(self, texts: Sequence[str] = (), images: Sequence[bytes] = ()) -> List[List[float]]:
        """The backbone's embeddings of `texts` (or of `images`, on an image backbone)."""
        r = self._call(
            self._inference.Embed,
            inference_pb2.EmbedRequest(texts=list(texts), images=list(images)),
        )
        return [list(e.values) for e in r.embeddings]

    def list_tasks(self) -> List[TaskSummary]:
        """Every live task (all pages)."""
        out: List[TaskSummary] = []
        token = ""
        while True:
            r = self._call(
                self._inference.ListTasks, inference_pb2.ListTasksRequest(page_token=token)
            )
            out += [
                TaskSummary(t.task, t.active_version, list(t.labels), t.head_kind) for t in r.tasks
            ]
            token = r.next_page_token
            if not token:
                return out

    def get_task(self, task: str) -> TaskInfo:
        r = self._call(self._inference.GetTask, inference_pb2.GetTaskRequest(task=task))
        return TaskInfo(
            task=r.task,
            labels=list(r.labels),
            active_version=r.active_version,
            versions=list(r.versions),
            head_kind=r.head_kind,
            head_accuracy=r.head_metrics.accuracy if r.HasField("head_metrics") else None,
            baseline_accuracy=(
                r.baseline_metrics.accuracy if r.HasField("baseline_metrics") else None
            ),
            selection=r.selection,
        )

    def info(self) -> Dict[str, object]:
        r = self._call(self._inference.Info, inference_pb2.InfoRequest())
        return {
            f.name: getattr(r, f.name) for f in inference_pb2.InfoResponse.DESCRIPTOR.fields
        }

    def train(
        self,
        task: str,
        examples: Sequence[tuple],
        activate: bool = True,
        seed: int = 0,
        timeout: float = 600.0,
        *,
        head_kind: str = "",
        adapt: str = "",
        windows: str = "",
    ) -> Iterator[TrainEvent]:
        """TrainHead (needs the admin token): yields progress, ends with a `done` event.

        `head_kind` (auto, linear, hybrid, mlp), `adapt` (never, auto, always) and
        `windows` (always, never, auto: how a long text is read) are the CLI's
        `--head`, `--adapt` and `--windows`; empty means the server's default.
        """
        request = registry_pb2.TrainHeadRequest(
            task=task,
            examples=[registry_pb2.Example(text=t, label=l) for t, l in examples],
            options=registry_pb2.TrainOptions(
                seed=seed, head_kind=head_kind, adapt=adapt, windows=windows
            ),
            activate=activate,
        )
        try:
            for m in self._registry.TrainHead(request, timeout=timeout, metadata=self._metadata):
                kind = m.WhichOneof("event")
                if kind == "progress":
                    p = m.progress
                    yield TrainEvent("progress", stage=p.stage, done=p.done, total=p.total)
                elif kind == "candidate":
                    yield TrainEvent("candidate", name=m.candidate.name, accuracy=m.candidate.accuracy)
                elif kind == "stage":
                    yield TrainEvent("stage", stage=m.stage)
                elif kind == "epoch":
                    yield TrainEvent("epoch", details={"epoch": m.epoch.epoch})
                elif kind == "done":
                    d = m.done
                    yield TrainEvent(
                        "done",
                        version=d.version,
                        activated=d.activated,
                        accuracy=d.head_metrics.accuracy,
                    )
        except grpc.RpcError as e:
            raise _error(e) from None
