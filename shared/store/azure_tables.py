"""The Azure Table Storage backend of the table port (azure-data-tables), for Azure and Azurite.

An account is reached through a connection string (Azurite, local runs) or through its table
endpoint with a token credential (Azure: the app's managed identity, no shared keys). Tables are
created on first use, once per process per table. Azure SDK errors are translated
into :mod:`shared.store.errors`: 409 on insert, 412 on a stale ETag and 404 on a conditional
replace become :class:`ConcurrencyConflict`; connection failures and 5xx become
:class:`StoreUnavailable`. Integers are written as Int64 so large versions survive.

Queries (Query Entities, https://learn.microsoft.com/rest/api/storageservices/query-entities)
are sent through the SDK client's own pipeline — its authentication (shared key or the
identity's token), retries and transport — but their JSON is decoded here: the SDK's generic
deserializer and entity conversion cost about twice the client CPU of the request itself,
which made them most of a busy-time query's time (``docs/benchmarks.md``, "The busy-time
query").
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    TransactionOperation,
    UpdateMode,
)

from shared.store.errors import ConcurrencyConflict, StoreError, StoreUnavailable
from shared.store.tables import (
    TRANSACTION_LIMIT,
    Condition,
    Properties,
    Scalar,
    StoredRow,
    check_transaction,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_C = TypeVar("_C")


def _chunks(items: Sequence[_C]) -> Iterator[list[_C]]:
    for start in range(0, len(items), TRANSACTION_LIMIT):
        yield list(items[start : start + TRANSACTION_LIMIT])


_ODATA_OPERATORS = {"eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge"}

# A query's answer in JSON with minimal metadata: each row's ETag as ``odata.etag``, and the
# type of a value JSON cannot tell as ``<name>@odata.type`` (Int64 is sent as a string).
_QUERY_HEADERS = {
    "Accept": "application/json;odata=minimalmetadata",
    "DataServiceVersion": "3.0",
    "MaxDataServiceVersion": "3.0;NetFx",
}
_CONTINUATION = "x-ms-continuation-"

# Tables known to exist, per storage endpoint, for the life of the process.
_created_tables: set[tuple[str, str]] = set()
_created_lock = threading.Lock()

T = TypeVar("T")


def table_name(prefix: str, name: str) -> str:
    """``prefix + name``, checked against Table Storage's naming rules."""
    full = prefix + name
    if not _TABLE_NAME.match(full):
        raise ValueError(
            f"table name {full!r} is invalid: 3-63 letters or digits, starting with a letter "
            "(check CALBRIDGE_TABLE_PREFIX)"
        )
    return full


@contextmanager
def _translated(table: str, action: str) -> Iterator[None]:
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StoreUnavailable(f"table {table}: {action} failed: {type(exc).__name__}") from exc
    except HttpResponseError as exc:
        if exc.status_code is not None and exc.status_code >= 500:
            raise StoreUnavailable(f"table {table}: {action} got HTTP {exc.status_code}") from exc
        raise StoreError(
            f"table {table}: {action} got HTTP {exc.status_code}: {exc.reason}"
        ) from exc
    except AzureError as exc:
        raise StoreUnavailable(f"table {table}: {action} failed: {type(exc).__name__}") from exc


def _to_entity(partition_key: str, row_key: str, properties: Properties) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    for name, value in properties.items():
        if isinstance(value, int) and not isinstance(value, bool):
            entity[name] = EntityProperty(value, EdmType.INT64)
        else:
            entity[name] = value
    return entity


def _to_row(entity: Any) -> StoredRow:
    properties: dict[str, Scalar] = {}
    for name, value in entity.items():
        # A property a ``$select`` named that the row does not have comes back as null: Table
        # Storage has no null, so it is absent.
        if name in ("PartitionKey", "RowKey") or value is None:
            continue
        properties[name] = value.value if isinstance(value, EntityProperty) else value
    return StoredRow(entity["PartitionKey"], entity["RowKey"], properties, entity.metadata["etag"])


def _queried_row(entity: dict[str, Any]) -> StoredRow:
    """One row of a query's JSON answer (minimal metadata). Int64 and Double values come typed
    (``Edm.Int64`` as a string; ``Edm.Double`` as a string for NaN and the infinities); other
    typed values (DateTime, Guid, Binary: calbridge writes none) stay the strings sent."""
    properties: dict[str, Scalar] = {}
    for name, value in entity.items():
        if value is None or name in _ROW_METADATA or "odata." in name:
            continue
        kind = entity.get(name + "@odata.type")
        if kind == "Edm.Int64":
            value = int(value)
        elif kind == "Edm.Double":
            value = float(value)
        properties[name] = value
    etag = entity.get("odata.etag")
    if etag is None:  # what the service derives it from, as the SDK does
        etag = "W/\"datetime'" + quote(str(entity["Timestamp"])) + "'\""
    return StoredRow(entity["PartitionKey"], entity["RowKey"], properties, str(etag))


_ROW_METADATA = frozenset({"PartitionKey", "RowKey", "Timestamp"})


def _odata_literal(value: Scalar) -> str:
    """A condition's value as an OData literal: strings quoted (a quote doubled), integers as
    Int64 (``0L``: an Int64 property never equals an Int32 literal), booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


class AzureTable:
    """One table in a storage account (the table port over azure-data-tables)."""

    def __init__(self, client: TableClient, endpoint: str) -> None:
        self._client = client
        self._endpoint = endpoint

    @property
    def name(self) -> str:
        return self._client.table_name

    def _ensure_created(self) -> None:
        marker = (self._endpoint, self.name)
        if marker in _created_tables:
            return
        with _created_lock, _translated(self.name, "create table"):
            if marker not in _created_tables:
                with suppress(ResourceExistsError):
                    self._client.create_table()
                _created_tables.add(marker)

    def _call(self, action: str, operation: Callable[[], T]) -> T:
        self._ensure_created()
        with _translated(self.name, action):
            return operation()

    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        def read() -> StoredRow | None:
            try:
                return _to_row(self._client.get_entity(partition_key, row_key))
            except ResourceNotFoundError:
                return None

        return self._call("read", read)

    def insert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        def insert() -> str:
            try:
                metadata = self._client.create_entity(
                    _to_entity(partition_key, row_key, properties)
                )
            except ResourceExistsError as exc:
                raise ConcurrencyConflict(f"table {self.name}: the row already exists") from exc
            return str(metadata["etag"])

        return self._call("insert", insert)

    def replace(self, partition_key: str, row_key: str, properties: Properties, etag: str) -> str:
        def replace() -> str:
            try:
                metadata = self._client.update_entity(
                    _to_entity(partition_key, row_key, properties),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                raise ConcurrencyConflict(
                    f"table {self.name}: the row changed or vanished since it was read"
                ) from exc
            return str(metadata["etag"])

        return self._call("replace", replace)

    def upsert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        def upsert() -> str:
            entity = _to_entity(partition_key, row_key, properties)
            return str(self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)["etag"])

        return self._call("upsert", upsert)

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> None:
        def delete() -> None:
            try:
                if etag is None:
                    self._client.delete_entity(partition_key, row_key)
                else:
                    self._client.delete_entity(
                        partition_key,
                        row_key,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except ResourceModifiedError as exc:
                raise ConcurrencyConflict(
                    f"table {self.name}: the row changed since it was read"
                ) from exc

        self._call("delete", delete)

    def upsert_many(self, partition_key: str, rows: Sequence[tuple[str, Properties]]) -> None:
        latest = {row_key: properties for row_key, properties in rows}  # one op per row a batch
        operations: list[Any] = [
            (
                TransactionOperation.UPSERT,
                _to_entity(partition_key, row_key, properties),
                {"mode": UpdateMode.REPLACE},
            )
            for row_key, properties in latest.items()
        ]
        for chunk in _chunks(operations):
            self._call("upsert_many", functools.partial(self._client.submit_transaction, chunk))

    def replace_many(
        self, partition_key: str, rows: Sequence[tuple[str, Properties, str]]
    ) -> list[str]:
        check_transaction(rows)
        operations: list[Any] = [
            (
                TransactionOperation.UPDATE,
                _to_entity(partition_key, row_key, properties),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
            for row_key, properties, etag in rows
        ]

        def replace() -> list[str]:
            try:
                answers = self._client.submit_transaction(operations)
            except TableTransactionError as exc:
                if exc.status_code in (404, 412):
                    raise ConcurrencyConflict(
                        f"table {self.name}: a row changed or vanished since it was read"
                    ) from exc
                raise
            return [str(answer["etag"]) for answer in answers]

        return self._call("replace_many", replace) if operations else []

    def delete_many(self, partition_key: str, row_keys: Sequence[str]) -> None:
        keys = list(dict.fromkeys(row_keys))
        for chunk in _chunks(keys):

            def delete(chunk: list[str] = chunk) -> None:
                try:
                    self._client.submit_transaction(
                        [
                            (
                                TransactionOperation.DELETE,
                                {"PartitionKey": partition_key, "RowKey": row_key},
                            )
                            for row_key in chunk
                        ]
                    )
                except TableTransactionError:
                    # A row already gone fails the whole batch: delete one by one instead.
                    for row_key in chunk:
                        self._client.delete_entity(partition_key, row_key)

            self._call("delete_many", delete)

    def query(
        self,
        partition_key: str,
        conditions: Sequence[Condition] = (),
        select: Sequence[str] = (),
    ) -> list[StoredRow]:
        return self._filtered(
            "query", [f"PartitionKey eq {_odata_literal(partition_key)}"], conditions, select
        )

    def scan(self, conditions: Sequence[Condition] = ()) -> list[StoredRow]:
        return self._filtered("scan", [], conditions)

    def _filtered(
        self,
        action: str,
        clauses: list[str],
        conditions: Sequence[Condition],
        select: Sequence[str] = (),
    ) -> list[StoredRow]:
        for condition in conditions:
            operator = _ODATA_OPERATORS[condition.comparison]
            clauses.append(f"{condition.property} {operator} {_odata_literal(condition.value)}")
        # azure-core puts query parameters into the URL as they are: the filter is encoded
        # here, or a value holding "+", "&" or "#" would reach the service as something else.
        parameters = {"$filter": quote(" and ".join(clauses), safe="")} if clauses else {}
        if select:
            # The keys are always wanted: a row is named by them.
            parameters["$select"] = ",".join(["PartitionKey", "RowKey", *select])
        return self._call(action, functools.partial(self._query, parameters))

    def _query(self, parameters: dict[str, str]) -> list[StoredRow]:
        """Every page of a query: a page holds at most 1,000 rows (and ends early at a
        partition's or a server's boundary); the next one is asked for with the continuation
        the answer's headers name, until there is none."""
        rows: list[StoredRow] = []
        headers = {**_QUERY_HEADERS, "x-ms-version": self._client.api_version}
        path = f"/{quote(self.name)}()"
        while True:
            request = HttpRequest("GET", path, params=parameters, headers=headers)
            # The generated client under the TableClient: its pipeline, without the SDK's
            # generic deserializer (the SDK sends its batches the same way).
            response = self._client._client.send_request(request)
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            rows += [_queried_row(entity) for entity in json.loads(response.content)["value"]]
            following = {
                name: response.headers.get(_CONTINUATION + name)
                for name in ("NextPartitionKey", "NextRowKey")
            }
            if following["NextPartitionKey"] is None:
                return rows
            parameters = {
                **parameters,
                **{name: value for name, value in following.items() if value is not None},
            }
            if following["NextRowKey"] is None:
                parameters.pop("NextRowKey", None)


class AzureTableService:
    """The tables of one storage account, named ``prefix + name``."""

    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self._prefix = prefix
        self._tables: dict[str, AzureTable] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, prefix: str = "", **client_options: Any
    ) -> AzureTableService:
        """Through a connection string: Azurite locally, or an account that allows keys."""
        return cls(
            TableServiceClient.from_connection_string(connection_string, **client_options), prefix
        )

    @classmethod
    def from_service_uri(
        cls, endpoint: str, credential: TokenCredential, prefix: str = "", **client_options: Any
    ) -> AzureTableService:
        """Through the account's table endpoint (``https://<account>.table.core.windows.net``)
        as an identity: what Azure uses, where the account refuses shared keys."""
        return cls(
            TableServiceClient(endpoint=endpoint, credential=credential, **client_options), prefix
        )

    @property
    def endpoint(self) -> str:
        """The table endpoint this service talks to."""
        return str(self._service.url)

    @property
    def credential(self) -> Any:
        """How it signs in: a token credential, or the account key of a connection string."""
        return self._service.credential

    def table(self, name: str) -> AzureTable:
        with self._lock:
            if name not in self._tables:
                full_name = table_name(self._prefix, name)
                self._tables[name] = AzureTable(
                    self._service.get_table_client(full_name), self._service.url
                )
            return self._tables[name]
