"""What a serving replica may answer for: one base model's adapters in a selection, and the
``name@alias`` pointers into them, read in ONE light query pair (no configs, tags or evals).

A replica re-reads this every ``--refresh`` seconds: an alias move becomes visible without a
restart, and the replica's bank loads the new digest on the next request that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import AmbiguousRefError, NotFoundError
from zoo.storage.bases import BaseLocation
from zoo.storage.db import Catalog


@dataclass(frozen=True)
class Served:
    """One adapter a replica serves (what its bank needs to fetch it)."""

    id: str
    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class ServingTable:
    """A snapshot of the selection: adapters by id, and ``name@alias`` → id."""

    base: BaseLocation
    adapters: dict[str, Served] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def find(self, model: str) -> Served | None:
        """``name@alias`` or a unique id prefix → the adapter; None for the base's own name.

        NotFoundError / AmbiguousRefError (exit codes 4) otherwise: the selection only."""
        if model == self.base.name:
            return None
        if "@" in model:
            adapter_id = self.aliases.get(model)
            if adapter_id is None:
                raise NotFoundError(f"model {model!r} is not served here (no such alias in the "
                                    "selection; GET /v1/models lists what is)")
            return self.adapters[adapter_id]
        prefix = model.strip().lower()
        hits = [a for i, a in self.adapters.items() if len(prefix) >= 4 and i.lower().startswith(prefix)]
        if not hits:
            raise NotFoundError(f"model {model!r} is not served here (not the base, a name@alias "
                                "or an id prefix of at least 4 characters in the selection)")
        if len(hits) > 1:
            raise AmbiguousRefError(f"model {model!r} matches {len(hits)} adapters; give more "
                                    "of the id")
        return hits[0]

    def models(self) -> list[dict[str, Any]]:
        """The OpenAI ``/v1/models`` entries: the base, every alias, every id."""
        out = [{"id": self.base.name, "object": "model", "owned_by": "zoo", "adapter": None}]
        for name_alias, adapter_id in sorted(self.aliases.items()):
            a = self.adapters[adapter_id]
            out.append({"id": name_alias, "object": "model", "owned_by": "zoo",
                        "adapter": a.id, "digest": a.digest, "root": self.base.name})
        for a in sorted(self.adapters.values(), key=lambda a: a.id):
            out.append({"id": a.id, "object": "model", "owned_by": "zoo", "adapter": a.id,
                        "name": a.name, "digest": a.digest, "root": self.base.name})
        return out


def serving_table(catalog: Catalog, base: str, *, tag: str | None = None,
                  query: str | None = None) -> ServingTable:
    """The causal-LM adapters of registered base ``base`` matching tag AND query (all when
    neither is given), with the aliases that point at them."""
    from sqlalchemy import select

    from zoo.storage.bases import find_base
    from zoo.storage.catalog import selection_query
    from zoo.storage.query import compile_query
    from zoo.storage.tables import AdapterRow, AliasRow

    with catalog.transaction(readonly=True) as session:
        row = find_base(session, base)
        location = BaseLocation(row.name, row.digest, row.location or "")
        where = [AdapterRow.base_model_id == row.id, AdapterRow.task == "causal-lm",
                 *compile_query(selection_query(tag, query))]
        adapters = {i: Served(i, n, d, int(s)) for i, n, d, s in session.execute(
            select(AdapterRow.id, AdapterRow.name, AdapterRow.digest, AdapterRow.size).where(*where))}
        aliases = {f"{n}@{a}": i for n, a, i in session.execute(
            select(AliasRow.name, AliasRow.alias, AliasRow.adapter_id)
            .join(AdapterRow, AdapterRow.id == AliasRow.adapter_id).where(*where))}
    return ServingTable(location, adapters, aliases)


__all__ = ["Served", "ServingTable", "serving_table"]
