"""The storage main.bicep creates is the storage calbridge's code uses: every queue the code
sends to or triggers on, each with the ``-poison`` queue the host moves failures to, and every
repository's table, all under the prefixes the app settings give the code. The lists come from
the code (``shared/queues``, the repositories, the registered functions), not from a copy."""

from __future__ import annotations

import dataclasses

import function_app
from devhost.indexing import indexed_functions
from shared.queues import names as queue_names
from shared.queues.messages import QUEUE_OF_MESSAGE
from shared.store.azure_tables import table_name
from shared.store.memory import MemoryTableService
from shared.store.repositories import build_repositories
from tests.infra.templates import (
    INFRA,
    decorator,
    main_variable,
    module_path,
    parameter_defaults,
    resources,
    template,
)

MAIN = INFRA / "main.bicep"


def queues_in_code() -> set[str]:
    """Queues the senders name, queues the triggers bind, and the base names of names.py."""
    sent = set(QUEUE_OF_MESSAGE.values())
    bound = {
        str(binding["queueName"]).removeprefix(queue_names.binding_queue_name(""))
        for function in indexed_functions(function_app.app)
        for binding in (b.get_dict_repr() for b in function.get_bindings())
        if binding.get("type") == "queueTrigger"
    }
    named = set()
    for value in vars(queue_names).values():
        if isinstance(value, str):
            try:
                queue_names.queue_name("", value)
            except ValueError:
                continue  # a setting's name or the poison suffix, not a queue
            named.add(value)
    return sent | bound | named


def tables_in_code() -> set[str]:
    repositories = build_repositories(MemoryTableService())
    return {
        getattr(repositories, field.name).table_name for field in dataclasses.fields(repositories)
    }


def test_the_template_lists_every_queue_the_code_uses_and_no_other() -> None:
    listed = main_variable("queueNames")
    assert len(listed) == len(set(listed))
    assert set(listed) == queues_in_code()


def test_the_template_lists_every_table_the_code_uses_and_no_other() -> None:
    listed = main_variable("tableNames")
    assert len(listed) == len(set(listed))
    assert set(listed) == tables_in_code()


def test_the_storage_module_creates_each_queue_its_poison_queue_and_each_table() -> None:
    storage = template()["modules"]["storage"]["config"]["params"]
    # main.bicep hands the lists and the very parameters the app settings use to the module.
    assert storage["queueNames"] == "queueNames"
    assert storage["tableNames"] == "tableNames"
    assert storage["queuePrefix"] == "queuePrefix"
    assert storage["tablePrefix"] == "tablePrefix"
    settings = main_variable("appSettings")
    assert settings["CALBRIDGE_QUEUE_PREFIX"] == "queuePrefix"
    assert settings["CALBRIDGE_TABLE_PREFIX"] == "tablePrefix"

    created = {
        (kind, loop, body["name"]) for kind, loop, body in resources(module_path("storage")) if loop
    }
    queue_type = "Microsoft.Storage/storageAccounts/queueServices/queues"
    table_type = "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert (queue_type, "queueNames", "${queuePrefix}${queueName}") in created
    assert (
        queue_type,
        "queueNames",
        "${queuePrefix}${queueName}" + queue_names.POISON_SUFFIX,
    ) in created
    assert (table_type, "tableNames", "${tablePrefix}${tableName}") in created


def test_the_default_names_and_the_longest_prefix_make_valid_names() -> None:
    defaults = parameter_defaults()
    for name in main_variable("queueNames"):
        queue_names.queue_name(defaults["queuePrefix"], name)
        queue_names.queue_name(defaults["queuePrefix"], name + queue_names.POISON_SUFFIX)
    for name in main_variable("tableNames"):
        table_name(defaults["tablePrefix"], name)
    longest_queue = max(len(n) for n in main_variable("queueNames")) + len(
        queue_names.POISON_SUFFIX
    )
    assert decorator(MAIN, "queuePrefix", "max_length") + longest_queue <= 63
    assert decorator(MAIN, "queuePrefix", "min_length") >= 1  # bindings need a prefix
    longest_table = max(len(n) for n in main_variable("tableNames"))
    assert decorator(MAIN, "tablePrefix", "max_length") + longest_table <= 63


def test_the_account_takes_no_shared_keys_and_only_tls_1_2() -> None:
    [account] = [
        body
        for kind, _, body in resources(module_path("storage"))
        if kind == "Microsoft.Storage/storageAccounts"
    ]
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
