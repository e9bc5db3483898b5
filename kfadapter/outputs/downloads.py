"""Downloads of single artifacts: checked whole before the first byte is sent, then streamed in chunks.

An object larger than DOWNLOAD_BUFFER is read twice: a first pass checks all of it (so every decoding error is a
JSON answer before any byte is sent), a second streams it; memory stays bounded by the chunk and buffer sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from kfadapter.core import archive
from kfadapter.core.errors import AdapterError, KfpUnavailable, NotFound, Undecodable
from kfadapter.outputs.objectstore import parse_uri
from kfadapter.packages import parsing as pl

log = logging.getLogger("kfadapter.outputs.service")  # the name operators' log filters already use

DOWNLOAD_BUFFER = 1024 * 1024  # objects up to this size are checked and served from one read


class ChooseMember(AdapterError):
    """The artifact is an archive of several files: the caller must pick one with `?member=` (300)."""

    status = HTTPStatus.MULTIPLE_CHOICES
    code = "choose_member"


class Download:
    """An artifact's bytes as an iterable of chunks, with its file name and size; `close()` frees the source."""

    def __init__(
        self, filename: str, size: int | None, chunks: Iterator[bytes], close: Callable[[], None] = lambda: None
    ) -> None:
        self.filename, self.size = filename, size
        self._chunks, self._close = chunks, close

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in self._chunks:
                sent += len(chunk)
                if self.size is not None and sent > self.size:
                    raise Undecodable("the artifact changed while it was being sent")
                yield chunk
            if self.size is not None and sent != self.size:
                raise Undecodable("the artifact changed while it was being sent")
        except AdapterError as exc:
            # Headers are gone already: the only honest signal left is an aborted transfer.
            log.warning("download of %s aborted after %d bytes: %s", self.filename, sent, exc.message)
            raise

    def close(self) -> None:
        """Release the upstream connection (also when the client went away mid-transfer)."""
        self._close()


class ArtifactDownloads:
    """Open one artifact of a run for download (the part of OutputsService behind the download route)."""

    # Set by OutputsService.__init__.
    kf: Any
    mlmd: Any
    objects: Any
    limits: archive.Limits
    v1: Any

    def _kind(self, run: dict) -> Any:
        raise NotImplementedError

    def open_artifact(
        self, run_id: str, node_id: str, name: str, *, member: str | None = None, list_members: bool = False
    ) -> Download | dict:
        """Open one artifact's bytes for streaming, or (list_members) list an archive's members."""
        try:
            decoded, close = self.v1.open(run_id, node_id, name)
        except (NotFound, KfpUnavailable) as failed:
            # KFP's :read knows only v1 artifacts (404 for v2 ones; 500 for a run without a workflow); a v2
            # run's artifacts live in MLMD and the object store.
            if isinstance(failed, KfpUnavailable) and failed.details.get("kfp_status") != 500:
                raise
            kind = self._kind(self.kf.get_run(run_id))
            if kind.kind == pl.V2:
                return self._v2_download(run_id, node_id, name, list_members, member)
            raise failed
        try:
            found = archive.scan(decoded, head_bytes=DOWNLOAD_BUFFER, member=member)
        finally:
            close()
        members = [m.to_dict() for m in found.members] if found.members is not None else None
        if member is not None and found.members is None:
            raise NotFound(
                f"artifact {name!r} is a single file, it has no member {member!r}",
                code="member_not_found",
                details={"members": None},
            )
        if list_members:
            return {
                "run_id": run_id,
                "node_id": node_id,
                "artifact": name,
                "stored_as": found.format,
                "members": members,
                "size": found.size,
            }
        if found.members is not None and found.chosen is None:
            details = {"members": members, "choose_with": "?member=<name>"}
            if member is not None:
                raise NotFound(f"artifact {name!r} has no member {member!r}", code="member_not_found", details=details)
            if not found.files:
                raise NotFound(
                    f"artifact {name!r} is an archive without files", code="member_not_found", details=details
                )
            raise ChooseMember(
                f"artifact {name!r} holds {len(found.files)} files; choose one with ?member=", details=details
            )
        filename = _filename(name, found.chosen.name if found.chosen else None)
        if found.complete:
            return Download(filename, len(found.head), iter([found.head]))
        decoded, close = self.v1.open(run_id, node_id, name)
        try:
            chunks = archive.iter_chosen(decoded, found.chosen.name if found.chosen else None)
        except BaseException:
            close()
            raise
        return Download(filename, found.size, chunks, close)

    def _v2_download(
        self, run_id: str, node_id: str, name: str, list_members: bool, member: str | None = None
    ) -> Download | dict:
        what = f"artifact {name!r} of task {node_id!r} in run {run_id!r}"
        art = None
        for e in self.mlmd.run_executions(run_id):
            if node_id in (str(e.id), e.pod_name, e.name):
                art = next((a for a in e.artifacts if a.name == name), None)
                if art is not None:
                    break
        if art is None:
            raise NotFound(
                f"{what} not found",
                code="artifact_not_found",
                details={"run_id": run_id, "node_id": node_id, "artifact": name},
            )
        if member is not None:
            # v2 artifacts are raw objects (no archive), so no member name can match.
            raise NotFound(
                f"{what} is a single object, it has no member {member!r}",
                code="member_not_found",
                details={"members": None},
            )
        if self.objects is None:
            raise NotFound(
                f"{what}: content unavailable, no object store configured",
                code="artifact_unavailable",
                details={"uri": art.uri},
            )
        if list_members:
            return {
                "run_id": run_id,
                "node_id": node_id,
                "artifact": name,
                "stored_as": "raw",
                "members": None,
                "uri": art.uri,
            }
        obj = self.objects.open(art.uri)
        key = (parse_uri(art.uri) or ("", name))[1]
        chunks = iter(lambda: obj.read(archive.CHUNK), b"")
        return Download(_filename(key.rstrip("/").rsplit("/", 1)[-1] or name, None), obj.size, chunks, obj.close)


def _filename(artifact: str, member: str | None) -> str:
    """Name the download after the member, unless it is Argo's generic `data`."""
    if member and member.rsplit("/", 1)[-1] not in ("data", ""):
        return member.rsplit("/", 1)[-1]
    return artifact
