"""The example plugin of gateway.yaml: a small notes API.

- `stamp` is a pipe: it runs before `notes/notes:create` and adds a timestamp to the new note;
- `count` is a hook: it counts every successful request, without delaying any of them;
- `create`, `get_note`, `list_notes` and `stats` are the actions of the `notes` controller,
  served over HTTP by the routes gateway.yaml declares.
"""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any


class NotesPlugin:
    def init(self, config: dict[str, Any], context: Any) -> None:
        self.stamp_field = config.get("stamp_field", "createdAt")
        self.errors = context.errors
        self.log = context.log
        self.notes: dict[str, dict[str, Any]] = {}
        self.counts: collections.Counter[str] = collections.Counter()

    async def stamp(self, request: Any) -> Any:
        """Pipe: add the creation time (ms) to the note in the request body."""
        if not request.input.body.get("text"):
            raise self.errors.BadRequestError("a note needs a 'text'",
                                              id="api.assert.missing_argument")
        request.input.body[self.stamp_field] = int(time.time() * 1000)
        return request

    async def count(self, request: Any, event: str) -> None:
        """Hook: count successful requests per controller:action."""
        self.counts[f"{request.input.controller}:{request.input.action}"] += 1

    async def create(self, request: Any) -> dict[str, Any]:
        note_id = str(uuid.uuid4())
        self.notes[note_id] = dict(request.input.body)
        return {"_id": note_id, "_source": self.notes[note_id]}

    async def get_note(self, request: Any) -> dict[str, Any]:
        note_id = request.input.args["id"]
        if note_id not in self.notes:
            raise self.errors.NotFoundError(f"no note {note_id!r}", id="api.process.not_found")
        return {"_id": note_id, "_source": self.notes[note_id]}

    async def list_notes(self, request: Any) -> dict[str, Any]:
        hits = [{"_id": k, "_source": v} for k, v in self.notes.items()]
        return {"total": len(hits), "hits": hits}

    async def stats(self, request: Any) -> dict[str, int]:
        return dict(self.counts)
