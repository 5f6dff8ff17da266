"""The official Python client `weaviate-client<4` (REST + GraphQL) against weaviate-test-server.

Each test drives the client the way an application would and checks the answer against what
Weaviate does (CONTRACT.md and Weaviate's source). Scores are checked against a small independent
BM25F / relative-score-fusion implementation written from Weaviate's formulas.
"""

import math

import pytest
import weaviate
from weaviate.util import generate_uuid5

# sku, name, description, price, tags, vector
PRODUCTS = [
    ("SKU-1", "Red cotton shirt", "A soft red shirt for summer days", 19.99, ["summer", "red"], [1.0, 0.0, 0.0, 0.0]),
    ("SKU-2", "Blue denim jeans", "Classic blue jeans, slim fit", 49.5, ["denim", "blue"], [0.0, 1.0, 0.0, 0.0]),
    ("SKU-3", "Red wool hat", "A warm hat in deep red", 15.0, ["winter", "red"], [0.9, 0.1, 0.0, 0.0]),
    ("SKU-4", "Green rain jacket", "Light jacket that keeps the rain out", 89.0, ["rain", "green"], [0.0, 0.0, 1.0, 0.0]),
    ("SKU-5", "Black leather shoes", "Shoes for the office and the evening", 120.0, ["leather"], [0.0, 0.0, 0.0, 1.0]),
    ("SKU-6", "Red summer dress", "A light red dress with a flower print", 39.0, ["summer", "red"], [0.8, 0.0, 0.2, 0.0]),
]

STOPWORDS = set(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)


@pytest.fixture
def client(server_url):
    return weaviate.Client(server_url)


def create_class(client, name):
    client.schema.create_class(
        {
            "class": name,
            "vectorizer": "none",
            "properties": [
                {"name": "sku", "dataType": ["text"], "tokenization": "field"},
                {"name": "name", "dataType": ["text"]},
                {"name": "description", "dataType": ["text"]},
                {"name": "price", "dataType": ["number"]},
                {"name": "tags", "dataType": ["text[]"]},
            ],
        }
    )


def load_catalog(client, name):
    create_class(client, name)
    client.batch.configure(batch_size=None, dynamic=False)
    with client.batch as batch:
        for sku, title, description, price, tags, vector in PRODUCTS:
            batch.add_data_object(
                {"sku": sku, "name": title, "description": description, "price": price, "tags": tags},
                name,
                uuid=generate_uuid5(sku, name),
                vector=vector,
            )
        results = batch.create_objects()
    assert [r["result"].get("status", "SUCCESS") for r in results] == ["SUCCESS"] * len(PRODUCTS)


def skus(answer, name):
    assert "errors" not in answer, answer
    return sorted(item["sku"] for item in answer["data"]["Get"][name])


def graphql_error(answer):
    assert "errors" in answer, answer
    return answer["errors"][0]["message"]


def test_schema_create_and_get(client, class_name):
    create_class(client, class_name)
    stored = client.schema.get(class_name)
    assert stored["class"] == class_name
    assert stored["vectorizer"] == "none"
    assert stored["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in stored["properties"]}
    assert props["sku"]["tokenization"] == "field"
    assert props["name"]["tokenization"] == "word"
    assert props["price"]["dataType"] == ["number"]
    assert "tokenization" not in props["price"]
    assert client.schema.exists(class_name)
    assert class_name in [c["class"] for c in client.schema.get()["classes"]]
    with pytest.raises(weaviate.exceptions.UnexpectedStatusCodeException) as e:
        create_class(client, class_name)
    assert e.value.status_code == 422
    assert "already exists" in str(e.value)
    client.schema.delete_class(class_name)
    assert not client.schema.exists(class_name)


def test_objects_crud(client, class_name):
    create_class(client, class_name)
    oid = generate_uuid5("SKU-123", class_name)
    client.data_object.create({"sku": "SKU-123", "price": 10.5}, class_name, uuid=oid, vector=[0.5, 0.5, 0.0, 0.0])
    got = client.data_object.get_by_id(oid, class_name=class_name, with_vector=True)
    assert got["properties"] == {"sku": "SKU-123", "price": 10.5}
    assert got["vector"] == [0.5, 0.5, 0.0, 0.0]
    assert client.data_object.exists(oid, class_name=class_name)
    # Creating the same id again is refused: POST is no upsert.
    with pytest.raises(weaviate.exceptions.ObjectAlreadyExistsException):
        client.data_object.create({"sku": "SKU-123"}, class_name, uuid=oid)
    # PATCH merges and keeps the vector.
    client.data_object.update({"name": "Renamed"}, class_name, oid)
    got = client.data_object.get_by_id(oid, class_name=class_name, with_vector=True)
    assert got["properties"] == {"sku": "SKU-123", "price": 10.5, "name": "Renamed"}
    assert got["vector"] == [0.5, 0.5, 0.0, 0.0]
    # PUT replaces the whole object; without a vector the object has none.
    client.data_object.replace({"sku": "SKU-123"}, class_name, oid)
    got = client.data_object.get_by_id(oid, class_name=class_name, with_vector=True)
    assert got["properties"] == {"sku": "SKU-123"}
    assert "vector" not in got or not got["vector"]
    # A value of the wrong type: 422 with Weaviate's message.
    with pytest.raises(weaviate.exceptions.UnexpectedStatusCodeException) as e:
        client.data_object.replace({"sku": "SKU-123", "price": "12.5"}, class_name, oid)
    assert "invalid number property 'price'" in str(e.value)
    client.data_object.delete(oid, class_name=class_name)
    assert not client.data_object.exists(oid, class_name=class_name)
    assert client.data_object.get_by_id(oid, class_name=class_name) is None
    # DELETE of a missing object is still a success.
    client.data_object.delete(oid, class_name=class_name)


def test_batch_reports_per_object_errors(client, class_name):
    create_class(client, class_name)
    client.batch.configure(batch_size=None, dynamic=False)
    with client.batch as batch:
        batch.add_data_object({"sku": "OK", "price": 1.0}, class_name, uuid=generate_uuid5("OK", class_name))
        batch.add_data_object({"sku": "BAD", "price": "12.5"}, class_name, uuid=generate_uuid5("BAD", class_name))
        batch.add_data_object({"sku": "V1"}, class_name, uuid=generate_uuid5("V1", class_name), vector=[1.0, 0.0])
        batch.add_data_object({"sku": "V2"}, class_name, uuid=generate_uuid5("V2", class_name), vector=[1.0, 0.0, 0.0])
        results = batch.create_objects()
    statuses = [r["result"].get("status", "SUCCESS") if "errors" not in r["result"] else "FAILED" for r in results]
    assert statuses == ["SUCCESS", "FAILED", "SUCCESS", "FAILED"]
    assert results[1]["result"]["errors"]["error"][0]["message"] == (
        f"invalid number property 'price' on class '{class_name}': requires a float, the given value is '12.5'"
    )
    assert results[3]["result"]["errors"]["error"][0]["message"] == (
        "new node has a vector with length 3. Existing nodes have vectors with length 2"
    )
    assert client.data_object.exists(generate_uuid5("OK", class_name), class_name=class_name)
    assert not client.data_object.exists(generate_uuid5("BAD", class_name), class_name=class_name)


@pytest.mark.parametrize(
    "where, expected",
    [
        ({"path": ["sku"], "operator": "Equal", "valueText": "SKU-2"}, ["SKU-2"]),
        ({"path": ["sku"], "operator": "NotEqual", "valueText": "SKU-2"}, ["SKU-1", "SKU-3", "SKU-4", "SKU-5", "SKU-6"]),
        ({"path": ["price"], "operator": "LessThan", "valueNumber": 19.99}, ["SKU-3"]),
        ({"path": ["price"], "operator": "LessThanEqual", "valueNumber": 19.99}, ["SKU-1", "SKU-3"]),
        ({"path": ["price"], "operator": "GreaterThan", "valueNumber": 89}, ["SKU-5"]),
        ({"path": ["price"], "operator": "GreaterThanEqual", "valueNumber": 89}, ["SKU-4", "SKU-5"]),
        ({"path": ["name"], "operator": "Like", "valueText": "sh*"}, ["SKU-1", "SKU-5"]),
        ({"path": ["sku"], "operator": "Like", "valueText": "SKU-?"}, ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5", "SKU-6"]),
        # A word-tokenized value: every token must be there, stopwords dropped.
        ({"path": ["name"], "operator": "Equal", "valueText": "the red hat"}, ["SKU-3"]),
        ({"path": ["tags"], "operator": "ContainsAny", "valueTextArray": ["denim", "rain"]}, ["SKU-2", "SKU-4"]),
        ({"path": ["tags"], "operator": "ContainsAll", "valueTextArray": ["summer", "red"]}, ["SKU-1", "SKU-6"]),
        (
            {"operator": "And", "operands": [
                {"path": ["name"], "operator": "Equal", "valueText": "red"},
                {"path": ["price"], "operator": "GreaterThan", "valueNumber": 16},
            ]},
            ["SKU-1", "SKU-6"],
        ),
        (
            {"operator": "Or", "operands": [
                {"path": ["sku"], "operator": "Equal", "valueText": "SKU-4"},
                {"path": ["sku"], "operator": "Equal", "valueText": "SKU-5"},
            ]},
            ["SKU-4", "SKU-5"],
        ),
    ],
)
def test_where_filters(client, class_name, where, expected):
    load_catalog(client, class_name)
    answer = client.query.get(class_name, ["sku"]).with_where(where).with_limit(100).do()
    assert skus(answer, class_name) == expected
    count = client.query.aggregate(class_name).with_where(where).with_meta_count().do()
    assert count["data"]["Aggregate"][class_name][0]["meta"]["count"] == len(expected)


def test_where_on_id_contains_any_fetches_by_ids(client, class_name):
    load_catalog(client, class_name)
    wanted = ["SKU-2", "SKU-5", "NOT-THERE"]
    ids = [generate_uuid5(s, class_name) for s in wanted]
    answer = (
        client.query.get(class_name, ["sku"])
        .with_where({"path": ["id"], "operator": "ContainsAny", "valueTextArray": ids})
        .with_additional(["id", "vector"])
        .with_limit(len(ids))
        .do()
    )
    items = answer["data"]["Get"][class_name]
    assert sorted(i["sku"] for i in items) == ["SKU-2", "SKU-5"]
    by_sku = {i["sku"]: i["_additional"] for i in items}
    assert by_sku["SKU-2"]["vector"] == [0.0, 1.0, 0.0, 0.0]
    assert by_sku["SKU-5"]["id"] == generate_uuid5("SKU-5", class_name)


def test_near_vector_with_distance_and_certainty(client, class_name):
    load_catalog(client, class_name)
    query = [1.0, 0.0, 0.0, 0.0]
    answer = (
        client.query.get(class_name, ["sku"])
        .with_near_vector({"vector": query})
        .with_additional(["distance", "certainty"])
        .with_limit(3)
        .do()
    )
    items = answer["data"]["Get"][class_name]
    assert [i["sku"] for i in items] == ["SKU-1", "SKU-3", "SKU-6"]
    expected = [cosine_distance(query, p[5]) for p in PRODUCTS if p[0] in ("SKU-1", "SKU-3", "SKU-6")]
    for item, want in zip(items, sorted(expected)):
        assert math.isclose(item["_additional"]["distance"], want, abs_tol=1e-6)
        assert math.isclose(item["_additional"]["certainty"], 1 - want / 2, abs_tol=1e-6)
    # A distance without a limit returns every object within it (SKU-6 is at 0.03).
    answer = client.query.get(class_name, ["sku"]).with_near_vector({"vector": query, "distance": 0.1}).do()
    assert skus(answer, class_name) == ["SKU-1", "SKU-3", "SKU-6"]
    answer = client.query.get(class_name, ["sku"]).with_near_vector({"vector": query, "certainty": 0.99}).do()
    assert skus(answer, class_name) == ["SKU-1", "SKU-3"]


def test_bm25_scores_follow_bm25f(client, class_name):
    load_catalog(client, class_name)
    answer = (
        client.query.get(class_name, ["sku"])
        .with_bm25(query="red shirt", properties=["name", "description"])
        .with_additional(["score"])
        .with_limit(10)
        .do()
    )
    items = answer["data"]["Get"][class_name]
    expected = bm25f("red shirt", ["name", "description"])
    got = [(i["sku"], float(i["_additional"]["score"])) for i in items]
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, score), (_, want) in zip(got, expected):
        assert math.isclose(score, want, rel_tol=1e-5)
    assert all(isinstance(i["_additional"]["score"], str) for i in items), "score is a string"
    # Without properties, every searchable text property is searched (sku included).
    answer = client.query.get(class_name, ["sku"]).with_bm25(query="SKU-4").do()
    assert skus(answer, class_name) == ["SKU-4"]


def test_hybrid_relative_score_fusion(client, class_name):
    load_catalog(client, class_name)
    query = [1.0, 0.0, 0.0, 0.0]
    for alpha in (0.0, 0.5, 0.75, 1.0):
        answer = (
            client.query.get(class_name, ["sku"])
            .with_hybrid(query="red shirt", alpha=alpha, vector=query, properties=["name", "description"])
            .with_additional(["score", "explainScore"])
            .with_limit(4)
            .do()
        )
        assert "errors" not in answer, answer
        items = answer["data"]["Get"][class_name]
        expected = fused("red shirt", ["name", "description"], query, alpha, class_name)[:4]
        assert [i["sku"] for i in items] == [s for s, _ in expected], alpha
        for item, (_, want) in zip(items, expected):
            assert math.isclose(float(item["_additional"]["score"]), want, abs_tol=1e-5)
            assert "Hybrid (Result Set" in item["_additional"]["explainScore"]
    # A where filter applies to both sides.
    answer = (
        client.query.get(class_name, ["sku"])
        .with_hybrid(query="red", alpha=0.5, vector=query)
        .with_where({"path": ["price"], "operator": "GreaterThan", "valueNumber": 30})
        .do()
    )
    assert skus(answer, class_name) == ["SKU-2", "SKU-4", "SKU-5", "SKU-6"]


def test_aggregate_count(client, class_name):
    load_catalog(client, class_name)
    answer = client.query.aggregate(class_name).with_meta_count().do()
    assert answer["data"]["Aggregate"][class_name] == [{"meta": {"count": len(PRODUCTS)}}]


def test_cursor_listing_with_vectors(client, class_name):
    load_catalog(client, class_name)
    seen = []
    after = None
    while True:
        page = client.data_object.get(class_name=class_name, limit=4, after=after, with_vector=True)
        objects = page["objects"]
        if not objects:
            break
        assert all(len(o["vector"]) == 4 for o in objects)
        seen.extend(o["id"] for o in objects)
        after = objects[-1]["id"]
    assert seen == sorted(generate_uuid5(p[0], class_name) for p in PRODUCTS)


def test_batch_delete_by_ids(client, class_name):
    load_catalog(client, class_name)
    ids = [generate_uuid5(s, class_name) for s in ("SKU-1", "SKU-3", "NOT-THERE")]
    result = client.batch.delete_objects(
        class_name=class_name,
        where={"path": ["id"], "operator": "ContainsAny", "valueTextArray": ids},
        output="verbose",
    )
    assert result["results"]["matches"] == 2
    assert result["results"]["successful"] == 2
    assert sorted(o["id"] for o in result["results"]["objects"]) == sorted(ids[:2])
    count = client.query.aggregate(class_name).with_meta_count().do()
    assert count["data"]["Aggregate"][class_name][0]["meta"]["count"] == len(PRODUCTS) - 2


def test_nodes_status(client, class_name):
    load_catalog(client, class_name)
    nodes = client.cluster.get_nodes_status(output="verbose")
    assert len(nodes) == 1
    shards = [s for s in nodes[0]["shards"] if s["class"] == class_name]
    assert len(shards) == 1
    assert shards[0]["objectCount"] == len(PRODUCTS)
    assert nodes[0]["status"] == "HEALTHY"


def test_dynamic_batching_reads_nodes(client, class_name):
    create_class(client, class_name)
    client.batch.configure(batch_size=2, dynamic=True)
    with client.batch as batch:
        for i in range(5):
            batch.add_data_object({"sku": f"D{i}"}, class_name, uuid=generate_uuid5(f"D{i}", class_name))
    client.batch.configure(batch_size=None, dynamic=False)
    count = client.query.aggregate(class_name).with_meta_count().do()
    assert count["data"]["Aggregate"][class_name][0]["meta"]["count"] == 5


def test_unknown_and_unimplemented_arguments_fail_closed(client, class_name):
    load_catalog(client, class_name)
    message = graphql_error(client.query.raw(f"{{ Get {{ {class_name}(noSuchArgument: 1) {{ sku }} }} }}"))
    assert message == f'Unknown argument "noSuchArgument" on field "{class_name}" of type "GetObjectsObj".'
    message = graphql_error(client.query.raw(f"{{ Get {{ {class_name} {{ sku _additional {{ nope }} }} }} }}"))
    assert message == f'Cannot query field "nope" on type "{class_name}Additional".'
    message = graphql_error(
        client.query.raw(f'{{ Get {{ {class_name}(sort: [{{path: ["price"]}}]) {{ sku }} }} }}')
    )
    assert "does not implement" in message
    message = graphql_error(
        client.query.raw(f'{{ Get {{ {class_name}(where: {{path: ["sku"], operator: Bogus, valueText: "x"}}) {{ sku }} }} }}')
    )
    assert "Expected type" in message
    message = graphql_error(client.query.raw(f"{{ Get {{ {class_name}(limit: 10, offset: 9995) {{ sku }} }} }}"))
    assert "query maximum results exceeded" in message


def test_limits_and_additional_only_when_asked(client, class_name):
    load_catalog(client, class_name)
    answer = client.query.raw(f"{{ Get {{ {class_name}(offset: 4) {{ sku }} }} }}")
    assert len(answer["data"]["Get"][class_name]) == 2
    answer = client.query.raw(f"{{ Get {{ {class_name}(limit: 2) {{ sku }} }} }}")
    items = answer["data"]["Get"][class_name]
    assert len(items) == 2 and all(set(i) == {"sku"} for i in items)
    answer = client.query.raw(f"{{ Get {{ {class_name}(limit: 1) {{ sku _additional {{ id distance }} }} }} }}")
    additional = answer["data"]["Get"][class_name][0]["_additional"]
    assert set(additional) == {"id", "distance"}
    assert additional["distance"] is None, "distance only for vector searches"


def cosine_distance(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return 1 - dot / (na * nb)


def words(text):
    out, cur = [], ""
    for ch in text:
        if ch.isalnum():
            cur += ch.lower()
        elif cur:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def bm25f(query, props, k1=1.2, b=0.75):
    """Weaviate's BM25F (bm25_searcher.go, terms.go), independently: [(sku, score)], best first."""
    docs = [dict(zip(("sku", "name", "description"), p[:3])) for p in PRODUCTS]
    tokens = [{p: words(d[p]) for p in props} for d in docs]
    avg = sum(sum(len(t[p]) for t in tokens) / len(tokens) for p in props) / len(props)
    terms = {}
    for t in words(query):
        if t not in STOPWORDS:
            terms[t] = terms.get(t, 0) + 1
    scores = [0.0] * len(docs)
    hit = [False] * len(docs)
    for term, dup in terms.items():
        n = sum(1 for t in tokens if any(term in t[p] for p in props))
        if n == 0:
            continue
        idf = math.log(1 + (len(docs) - n + 0.5) / (n + 0.5)) * dup
        for i, t in enumerate(tokens):
            f = sum(t[p].count(term) for p in props)
            if f == 0:
                continue
            length = sum(len(t[p]) for p in props if term in t[p])
            scores[i] += idf * f / (f + k1 * (1 - b + b * length / avg))
            hit[i] = True
    ranked = [(docs[i]["sku"], scores[i]) for i in range(len(docs)) if hit[i]]
    return sorted(ranked, key=lambda x: (-x[1], x[0]))


def fused(query, props, vector, alpha, class_name):
    """relativeScoreFusion (hybrid_fusion.go), independently: [(sku, score)], best first; ties
    go to the higher score of the last side that found the object, then to the lower id."""
    sides = []
    if alpha > 0:
        sides.append((alpha, [(p[0], 1 - cosine_distance(vector, p[5])) for p in PRODUCTS]))
    if alpha < 1:
        sides.append((1 - alpha, bm25f(query, props)))
    total, secondary = {}, {}
    for weight, results in sides:
        hi = max(s for _, s in results)
        lo = min(s for _, s in results)
        for sku, s in results:
            norm = weight if hi == lo else weight * (s - lo) / (hi - lo)
            total[sku] = total.get(sku, 0.0) + norm
            secondary[sku] = s
    rounded = lambda x: round(x, 6)  # noqa: E731 - Weaviate treats scores within 1e-7 as equal
    return sorted(
        total.items(),
        key=lambda x: (-rounded(x[1]), -rounded(secondary[x[0]]), generate_uuid5(x[0], class_name)),
    )
