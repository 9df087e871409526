"""Make moto's DynamoDB cost what the real one does: O(items), not O(table) or O(attributes^2).

moto snapshots a whole table with copy.deepcopy for every item of a transaction, so that it
can roll back; with thousands of delivery records each 50-item claim copied the table 50
times and a 10,000-recipient notice took quadratic time. Here, while a transaction runs on
this thread, tables are not copied; instead the items the transaction touches are saved
before it and put back if it is cancelled. Semantics (all or nothing) are unchanged.
"""

from __future__ import annotations

import copy
import threading
from types import SimpleNamespace
from typing import Any

from optout_local import ses_emulation

_state = threading.local()
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def deepcopy(obj: Any, memo: Any = None) -> Any:
        if getattr(_state, "active", False) and isinstance(obj, Table):
            return obj  # the item journal below does the rollback
        return copy.deepcopy(obj, memo)

    setattr(models, "copy", SimpleNamespace(deepcopy=deepcopy, copy=copy.copy))  # noqa: B010 - swap a module global
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        journal: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table_name = op.get("TableName")
            if table_name not in self.tables:
                continue
            if op_type == "Put":
                table = self.get_table(table_name)
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None and table.range_key_attr in attrs:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op.get("Key", {})
            try:
                current = self.get_item(table_name, key)
            except Exception:  # noqa: S112 - a bad key: the original raises the proper error for it  # nosec B112
                continue
            journal.append((table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        _state.active = True
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, key, before in reversed(journal):
                if before is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)
            raise
        finally:
            _state.active = False

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _size_items_once()
    _lookups_once()
    ses_emulation.apply()  # SES v2 SendBulkEmail and the email template operations
    _applied = True


def _lookups_once() -> None:
    """Two answers moto works out afresh on every request, though they never change while it runs.

    Routing a request lists moto's own package folders (a listdir and a stat per folder), and
    dispatching it lists the response class's methods (inspect.getmembers). Together they were
    about a tenth of moto's CPU per DynamoDB call, and moto's one interpreter is what every
    function's call waits on.
    """
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    methods: dict[type, frozenset[str]] = {}
    names = getattr(responses, "method_names_from_class")  # noqa: B009 - moto does not export it

    def method_names_from_class(clazz: Any) -> frozenset[str]:
        found = methods.get(clazz)
        if found is None:
            found = methods[clazz] = frozenset(names(clazz))
        return found

    setattr(responses, "method_names_from_class", method_names_from_class)  # noqa: B010 - swap a module global


def _size_items_once() -> None:
    """Check an item against the 400 KB limit once, not once per attribute.

    moto's LimitedSizeDict measures the whole item again each time an attribute is set, so an
    item of n attributes measures O(n^2) values as it is built. The limit and its error stay.
    """
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.utilities import bytesize

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        converted = {key: dynamo_type.DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in converted.items()) > 405000:
            raise ItemSizeTooLarge
        self.attrs = dynamo_type.LimitedSizeDict.__new__(dynamo_type.LimitedSizeDict)
        dict.update(self.attrs, converted)

    dynamo_type.Item.__init__ = item_init  # type: ignore[method-assign]
