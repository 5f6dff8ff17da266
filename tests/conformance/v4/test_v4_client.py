"""The official Python client `weaviate-client>=4` against weaviate-test-server, over REST only.

The v4 client sends its queries and batch imports through gRPC, which the test server does not
speak: those are tested to fail at once with a message saying so. Schema, collection config,
aliases and single-object writes go through REST and are tested for real.
"""

import time
from urllib.parse import urlparse

import pytest
import weaviate
from weaviate.classes.config import Configure, DataType, Property
from weaviate.util import generate_uuid5


@pytest.fixture
def client(server_url):
    url = urlparse(server_url)
    # The server answers every gRPC call UNIMPLEMENTED on its gRPC port. The init checks
    # include a gRPC health check, so they are skipped.
    c = weaviate.connect_to_custom(
        http_host=url.hostname,
        http_port=url.port,
        http_secure=False,
        grpc_host=url.hostname,
        grpc_port=server_url.grpc_port,
        grpc_secure=False,
        skip_init_checks=True,
    )
    yield c
    c.close()


def create(client, name):
    return client.collections.create(
        name,
        description="the seed's catalog",
        vectorizer_config=Configure.Vectorizer.none(),
        properties=[
            Property(name="sku", data_type=DataType.TEXT),
            Property(name="name", data_type=DataType.TEXT),
            Property(name="price", data_type=DataType.NUMBER),
        ],
    )


def test_collection_create_get_list_delete(client, class_name):
    create(client, class_name)
    assert client.collections.exists(class_name)
    config = client.collections.get(class_name).config.get()
    assert config.name == class_name
    assert config.description == "the seed's catalog"
    assert [(p.name, p.data_type) for p in config.properties] == [
        ("sku", DataType.TEXT),
        ("name", DataType.TEXT),
        ("price", DataType.NUMBER),
    ]
    assert class_name in client.collections.list_all(simple=True)
    client.collections.delete(class_name)
    assert not client.collections.exists(class_name)


def test_collection_config_update_keeps_the_rest(client, class_name):
    collection = create(client, class_name)
    collection.config.update(description="catalog, version 2")
    config = collection.config.get()
    assert config.description == "catalog, version 2"
    assert [p.name for p in config.properties] == ["sku", "name", "price"]


def test_objects_over_rest(client, class_name):
    collection = create(client, class_name)
    oid = generate_uuid5("SKU-1", class_name)
    collection.data.insert({"sku": "SKU-1", "price": 3.5}, uuid=oid, vector=[0.1, 0.2, 0.3])
    assert collection.data.exists(oid)
    collection.data.update(oid, properties={"name": "Shirt"})
    collection.data.replace(oid, properties={"sku": "SKU-1", "name": "Shirt"}, vector=[0.3, 0.2, 0.1])
    assert collection.data.delete_by_id(oid)
    assert not collection.data.exists(oid)


def test_aliases(client, class_name):
    create(client, class_name)
    other = class_name + "B"
    create(client, other)
    alias = "A" + class_name
    client.alias.create(alias_name=alias, target_collection=class_name)
    got = client.alias.get(alias_name=alias)
    assert (got.alias, got.collection) == (alias, class_name)
    assert alias in client.alias.list_all()
    assert alias in client.alias.list_all(collection=class_name)
    assert alias not in client.alias.list_all(collection=other)
    # Objects written through the alias land in the class it points to.
    client.collections.get(alias).data.insert({"sku": "via-alias"}, uuid=generate_uuid5("x", alias))
    assert client.collections.get(class_name).data.exists(generate_uuid5("x", alias))
    assert client.alias.update(alias_name=alias, new_target_collection=other)
    assert client.alias.get(alias_name=alias).collection == other
    assert client.alias.delete(alias_name=alias)
    assert client.alias.get(alias_name=alias) is None
    assert not client.alias.delete(alias_name=alias)


def test_grpc_queries_fail_at_once_and_say_why(client, class_name):
    collection = create(client, class_name)
    started = time.monotonic()
    with pytest.raises(weaviate.exceptions.WeaviateBaseError) as e:
        collection.query.fetch_objects(limit=1)
    assert time.monotonic() - started < 10, "a gRPC call must fail fast, not hang"
    assert "does not speak gRPC" in str(e.value)
