"""Property tests: the indexed engine agrees with the plain evaluator; equivalent filters share
a room; rooms with one id agree on every document."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanic_gateway.realtime import Engine
from sanic_gateway.realtime.reference import matches

FIELDS = ["a", "b", "c.d", "tags"]
SCALARS = st.sampled_from([0, 1, 1.0, -0.0, 2, 2.5, -1, "x", "y", "1", True, False, None])
STRINGS = st.sampled_from(["x", "y", "1", "xy"])
POINTS = st.sampled_from([
    {"lat": 43.6, "lon": 3.9}, [43.61, 3.91], "43.7, 4.0", "spfb09puk", {"lat": 10, "lon": 10},
    "nowhere", 0, [1, 2, 3]])


def _range():
    bound = st.sampled_from([-1, 0, 1, 1.5, 2, 3])
    return st.tuples(st.sampled_from(FIELDS), st.sampled_from(["gt", "gte", None]), bound,
                     st.sampled_from(["lt", "lte", None]), bound).filter(
        lambda t: (t[1] or t[3]) and (not (t[1] and t[3]) or t[2] < t[4])).map(
        lambda t: {"range": {t[0]: {k: v for k, v in ((t[1], t[2]), (t[3], t[4])) if k}}})


LEAVES = st.one_of(
    st.builds(lambda f, v: {"equals": {f: v}}, st.sampled_from(FIELDS), SCALARS),
    st.builds(lambda f, v: {"in": {f: v}}, st.sampled_from(FIELDS),
              st.lists(STRINGS, min_size=1, max_size=3)),
    st.builds(lambda f: {"exists": f}, st.sampled_from([*FIELDS, "c"])),
    st.builds(lambda f: {"missing": f}, st.sampled_from([*FIELDS, "c"])),
    st.builds(lambda v: {"exists": f"tags[{v}]"}, st.sampled_from(['"x"', "1", "true", "null"])),
    st.builds(lambda v: {"missing": f"tags[{v}]"}, st.sampled_from(['"x"', "1"])),
    st.builds(lambda v: {"ids": {"values": v}}, st.lists(STRINGS, min_size=1, max_size=2)),
    _range(),
    st.builds(lambda f, p: {"regexp": {f: p}}, st.sampled_from(FIELDS),
              st.sampled_from(["^x", "y$", "1", "^$"])),
    st.builds(lambda d: {"geoDistance": {"p": [43.6, 3.9], "distance": d}},
              st.sampled_from(["2km", "20km"])),
    st.just({"geoBoundingBox": {"p": {"top": 44, "left": 3.5, "bottom": 43, "right": 4.5}}}),
)


def _combine(children):
    return st.one_of(
        st.builds(lambda c: {"and": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"or": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
        st.builds(lambda m, n, s: {"bool": {"must": m, "must_not": n, "should": s}},
                  st.lists(children, min_size=1, max_size=2),
                  st.lists(children, min_size=1, max_size=2),
                  st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda s: {"bool": {"should_not": s}},
                  st.lists(children, min_size=1, max_size=2)),
    )


FILTERS = st.recursive(LEAVES, _combine, max_leaves=6)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
DOCUMENTS = st.fixed_dictionaries({}, optional={
    "a": VALUES, "b": VALUES, "tags": VALUES, "p": POINTS,
    "c": st.one_of(SCALARS, st.fixed_dictionaries({}, optional={"d": VALUES})),
})
IDS = st.one_of(st.none(), STRINGS)
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIGHTER = settings(SETTINGS, max_examples=150)


def _engine() -> Engine:
    return Engine(max_conditions=200, max_terms=4096)


@SETTINGS
@given(st.lists(FILTERS, min_size=1, max_size=6), st.lists(st.tuples(DOCUMENTS, IDS), max_size=6),
       st.data())
def test_engine_agrees_with_the_plain_evaluator(filters, documents, data):
    engine = _engine()
    rooms = [engine.register("i", "c", f) for f in filters]
    live = set(range(len(filters)))
    for step in range(2):
        for doc, doc_id in documents:
            expected = {rooms[i] for i in live if matches(filters[i], doc, doc_id)}
            assert set(engine.test("i", "c", doc, id=doc_id)) == expected, (filters, doc)
        if step == 0 and live:  # remove some rooms, then check again
            removed = data.draw(st.sets(st.sampled_from(sorted(live))))
            for i in removed:
                engine.remove(rooms[i])
            live = {i for i in live if rooms[i] not in {rooms[j] for j in removed}}


@LIGHTER
@given(FILTERS, FILTERS)
def test_equivalent_writings_share_a_room(f, g):
    engine = _engine()
    room = engine.normalize("i", "c", {"and": [f, g]}).id
    assert engine.normalize("i", "c", {"and": [g, f]}).id == room
    assert engine.normalize("i", "c", {"bool": {"must": [f, g]}}).id == room
    assert engine.normalize("i", "c", {"and": [f, {"not": {"not": g}}]}).id == room
    assert engine.normalize("i", "c", {"and": [f, g, f]}).id == room
    either = engine.normalize("i", "c", {"or": [f, g]}).id
    assert engine.normalize("i", "c", {"bool": {"should": [g, f]}}).id == either
    assert engine.normalize("i", "c", {"not": {"and": [{"not": f}, {"not": g}]}}).id == either
    assert engine.normalize("i", "c", {"not": {"bool": {"must_not": [f, g]}}}).id == either


@LIGHTER
@given(FILTERS, FILTERS, st.lists(st.tuples(DOCUMENTS, IDS), min_size=1, max_size=8))
def test_one_room_id_means_one_meaning(f, g, documents):
    engine = _engine()
    if engine.normalize("i", "c", f).id == engine.normalize("i", "c", g).id:
        for doc, doc_id in documents:
            assert matches(f, doc, doc_id) == matches(g, doc, doc_id)


def test_documented_equivalences():
    engine = _engine()
    same = [
        {"in": {"a": ["x", "y"]}},
        {"or": [{"equals": {"a": "y"}}, {"equals": {"a": "x"}}]},
        {"bool": {"should": [{"equals": {"a": "x"}}, {"equals": {"a": "y"}}]}},
        {"or": [{"equals": {"a": "x"}}, {"and": [{"equals": {"a": "y"}}, {"exists": "a"}]},
                {"equals": {"a": "y"}}]},
    ]
    assert len({engine.normalize("i", "c", f).id for f in same}) == 1
    # (a and b) or (a and not b) is a
    merged = {"or": [{"and": [{"exists": "a"}, {"exists": "b"}]},
                     {"and": [{"exists": "a"}, {"missing": "b"}]}]}
    assert engine.normalize("i", "c", merged).id == engine.normalize("i", "c", {"exists": "a"}).id
    never = {"and": [{"equals": {"a": 1}}, {"equals": {"a": 2}}]}
    assert engine.normalize("i", "c", never).filter == [[{"nothing": True}]]
    assert engine.normalize("i", "c", {}).filter == [[{"everything": True}]]


@LIGHTER
@given(FILTERS, st.lists(st.tuples(DOCUMENTS, IDS), min_size=1, max_size=6))
def test_a_normal_form_sent_to_another_node_gives_the_same_room(f, documents):
    import orjson

    here, there = _engine(), _engine()
    room = here.register("i", "c", f)
    wire = orjson.loads(orjson.dumps(here.get(room).filter))  # as another node receives it
    assert there.store(there.load("i", "c", wire)) == room
    for doc, doc_id in documents:
        assert there.test("i", "c", doc, id=doc_id) == here.test("i", "c", doc, id=doc_id)
