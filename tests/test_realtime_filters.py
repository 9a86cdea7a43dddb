"""The filter engine, keyword by keyword, with the examples of Koncorde's documentation."""

from __future__ import annotations

import pytest

from sanic_gateway.errors import BadRequestError
from sanic_gateway.realtime import REGEXP_ENGINE, Engine
from sanic_gateway.realtime.geo import convert_distance, convert_geopoint, decode_geohash

GRACE = {"firstName": "Grace", "lastName": "Hopper", "age": 85, "city": "NYC",
         "hobby": ["compiler", "COBOL"], "alive": False,
         "location": {"lat": 32.692742, "lon": -97.114127}}
ADA = {"firstName": "Ada", "lastName": "Lovelace", "age": 36, "city": "London",
       "hobby": ["programming", "algorithm"],
       "location": {"lat": 51.519291, "lon": -0.149817}}
MARIE = {"firstName": "Marie", "lastName": "Curie", "age": 55, "city": "Paris",
         "hobby": "radium"}
PEOPLE = {"grace": GRACE, "ada": ADA, "marie": MARIE}


def who(filter_) -> set[str]:
    """Names of the people the filter matches, through a registered room."""
    engine = Engine()
    room = engine.register("index", "people", filter_)
    return {name for name, doc in PEOPLE.items()
            if room in engine.test("index", "people", doc, id=name)}


@pytest.mark.parametrize(("filter_", "expected"), [
    ({"equals": {"firstName": "Grace"}}, {"grace"}),
    ({"exists": "alive"}, {"grace"}),
    ({"exists": 'hobby["algorithm"]'}, {"ada"}),
    ({"exists": {"field": "alive"}}, {"grace"}),
    ({"ids": {"values": ["ada"]}}, {"ada"}),
    ({"in": {"firstName": ["Grace", "Ada"]}}, {"grace", "ada"}),
    ({"missing": "alive"}, {"ada", "marie"}),
    ({"missing": 'hobby["algorithm"]'}, {"grace", "marie"}),
    ({"range": {"age": {"lt": 85}}}, {"ada", "marie"}),
    ({"range": {"age": {"gte": 36, "lte": 55}}}, {"ada", "marie"}),
    ({"range": {"age": {"gt": 36, "lt": 86}}}, {"grace", "marie"}),
    ({"regexp": {"firstName": {"value": "^g\\w+", "flags": "i"}}}, {"grace"}),
    ({"regexp": {"firstName": "^g\\w+"}}, set()),
    ({"regexp": {"lastName": "e$"}}, {"ada", "marie"}),
    ({"and": [{"equals": {"city": "NYC"}}, {"exists": "alive"}]}, {"grace"}),
    ({"or": [{"equals": {"city": "NYC"}}, {"equals": {"city": "London"}}]}, {"grace", "ada"}),
    ({"not": {"equals": {"city": "London"}}}, {"grace", "marie"}),
    ({"bool": {
        "must": [{"in": {"firstName": ["Grace", "Ada"]}},
                 {"range": {"age": {"gte": 36, "lt": 85}}}],
        "must_not": [{"equals": {"city": "NYC"}}],
        "should": [{"equals": {"hobby": "computer"}}, {"exists": {"field": "lastName"}}],
    }}, {"ada"}),
    ({"bool": {"should_not": [{"exists": "alive"}, {"equals": {"city": "NYC"}}]}},
     {"ada", "marie"}),
    ({"geoDistance": {"location": {"lat": 51.5029017, "lon": -0.1606903}, "distance": "10km"}},
     {"ada"}),
    ({"geoDistance": {"location": "51.5029017, -0.1606903", "distance": "1km"}}, set()),
    ({"geoDistanceRange": {"location": [51.5029017, -0.1606903], "from": "1km",
                           "to": "10 kilometers"}}, {"ada"}),
    ({"geoBoundingBox": {"location": {"top": 52, "left": -1, "bottom": 51, "right": 0}}},
     {"ada"}),
    ({"geoBoundingBox": {"location": {"topLeft": {"lat": 52, "lon": -1},
                                      "bottomRight": {"lat": 51, "lon": 0}}}}, {"ada"}),
    ({"geoBoundingBox": {"location": {"top_left": "52, -1", "bottom_right": "51, 0"}}},
     {"ada"}),
    ({"geoPolygon": {"location": {"points": [
        {"lat": 51.523029, "lon": -0.160793}, [51.522842, -0.145043],
        "51.518303, -0.146116", {"latLon": {"lat": 51.516487, "lon": -0.162295}},
        "gcpvh6uxh60x1"]}}}, {"ada"}),
    ({}, {"grace", "ada", "marie"}),
    ({"nothing": {}}, set()),
])
def test_documented_examples(filter_, expected):
    assert who(filter_) == expected


def test_nested_fields_and_arrays_follow_koncorde():
    engine = Engine()
    nested = engine.register("i", "c", {"equals": {"a.b.c": 1}})
    array = engine.register("i", "c", {"equals": {"tags": "x"}})
    exists_obj = engine.register("i", "c", {"exists": "a.b"})
    assert set(engine.test("i", "c", {"a": {"b": {"c": 1}}})) == {nested, exists_obj}
    # equals compares scalars only: a value inside an array does not match it
    assert engine.test("i", "c", {"tags": ["x", "y"]}) == []
    assert engine.test("i", "c", {"tags": "x"}) == [array]
    # arrays are not entered when flattening
    assert engine.test("i", "c", {"a": [{"b": {"c": 1}}]}) == []


def test_equals_is_strict_about_types():
    engine = Engine()
    one = engine.register("i", "c", {"equals": {"a": 1}})
    true = engine.register("i", "c", {"equals": {"a": True}})
    null = engine.register("i", "c", {"equals": {"a": None}})
    assert engine.test("i", "c", {"a": 1.0}) == [one]
    assert engine.test("i", "c", {"a": True}) == [true]
    assert engine.test("i", "c", {"a": "1"}) == []
    assert engine.test("i", "c", {"a": None}) == [null]
    assert engine.test("i", "c", {}) == []


def test_negations_match_missing_fields_like_koncorde():
    engine = Engine()
    not_equals = engine.register("i", "c", {"not": {"equals": {"a": 1}}})
    not_range = engine.register("i", "c", {"not": {"range": {"a": {"gt": 0}}}})
    not_regexp = engine.register("i", "c", {"not": {"regexp": {"a": "^1"}}})
    assert set(engine.test("i", "c", {})) == {not_equals, not_range, not_regexp}
    assert set(engine.test("i", "c", {"a": "x"})) == {not_equals, not_range, not_regexp}
    # a number is tested through its string form by `not regexp`
    assert set(engine.test("i", "c", {"a": 12})) == {not_equals}
    assert set(engine.test("i", "c", {"a": -5})) == {not_equals, not_range, not_regexp}


def test_exists_array_value_form():
    engine = Engine()
    room = engine.register("i", "c", {"exists": "n[3]"})
    null = engine.register("i", "c", {"exists": "n[null]"})
    escaped = engine.register("i", "c", {"exists": "a\\[b\\]"})
    assert engine.test("i", "c", {"n": [1, 3]}) == [room]
    assert engine.test("i", "c", {"n": [3.0, None]}) != []
    assert set(engine.test("i", "c", {"n": [3.0, None]})) == {room, null}
    assert engine.test("i", "c", {"n": [True]}) == []
    assert engine.test("i", "c", {"n": 3}) == []
    assert engine.test("i", "c", {"a[b]": 0}) == [escaped]


def test_ids_need_the_document_id():
    engine = Engine()
    room = engine.register("i", "c", {"ids": {"values": ["a", "b"]}})
    assert engine.test("i", "c", {}, id="b") == [room]
    assert engine.test("i", "c", {}, id="c") == []
    assert engine.test("i", "c", {}) == []


def test_geopoints_of_documents_in_every_format():
    engine = Engine()
    room = engine.register("i", "c", {"geoDistance": {"p": [43.6, 3.9], "distance": "1km"}})
    for point in ({"lat": 43.6, "lon": 3.9}, [43.6, 3.9], "43.6, 3.9", {"lat_lon": [43.6, 3.9]},
                  {"latLon": "43.6,3.9"}, {"latLon": {"lat": "43.6", "lon": "3.9"}}, "spfb09puk"):
        assert engine.test("i", "c", {"p": point}) == [room], point
    for point in ("nope", [1, 2, 3], {"lat": 1}, 0, None, "aaaa"):
        assert engine.test("i", "c", {"p": point}) == [], point


def test_distances_and_geohashes():
    assert convert_distance("1km") == 1000
    assert convert_distance("10m") == 10
    assert convert_distance("1.5mi") == pytest.approx(2414.01)
    assert convert_distance("3 258,55 Ft") == pytest.approx(993.20604)
    assert convert_distance("10 kilometers") == 10000
    for bad in ("5", "1 parsec", "km", "1e3m"):
        with pytest.raises(ValueError):
            convert_distance(bad)
    lat, lon = decode_geohash("gcpvh6uxh60x1")
    assert lat == pytest.approx(51.520226, abs=1e-6) and lon == pytest.approx(-0.158432, abs=1e-6)
    assert convert_geopoint("1.5, 2abc") == (1.5, 2.0)


def test_rooms_are_per_index_and_collection():
    engine = Engine()
    a = engine.register("i", "c1", {"equals": {"x": 1}})
    b = engine.register("i", "c2", {"equals": {"x": 1}})
    assert a != b
    assert engine.test("i", "c1", {"x": 1}) == [a]
    assert engine.test("j", "c1", {"x": 1}) == []
    assert sorted(engine.rooms("i")) == sorted([a, b]) and engine.rooms("i", "c2") == [b]


def test_remove_frees_shared_conditions():
    engine = Engine()
    a = engine.register("i", "c", {"and": [{"equals": {"x": 1}}, {"range": {"y": {"gt": 0}}}]})
    b = engine.register("i", "c", {"equals": {"x": 1}})
    assert engine.counts()["conditions"] == 2
    assert engine.remove(a) and not engine.exists(a) and engine.exists(b)
    assert engine.test("i", "c", {"x": 1, "y": 1}) == [b]
    assert engine.counts() == {"rooms": 1, "collections": 1, "subfilters": 1, "conditions": 1}
    assert engine.remove(b) and not engine.remove(b)
    assert engine.counts() == {"rooms": 0, "collections": 0, "subfilters": 0, "conditions": 0}
    assert engine.test("i", "c", {"x": 1, "y": 1}) == []


def test_many_ranges_through_the_interval_tree():
    engine = Engine()
    rooms = {}
    for low in range(300):
        rooms[low] = engine.register("i", "c", {"range": {"v": {"gte": low, "lt": low + 10}}})
    for low in range(0, 300, 3):
        engine.remove(rooms.pop(low))
    for value in (-1, 0, 5, 9.5, 10, 150, 299, 305, 400):
        expected = {room for low, room in rooms.items() if low <= value < low + 10}
        assert set(engine.test("i", "c", {"v": value})) == expected, value


def _error(filter_) -> BadRequestError:
    with pytest.raises(BadRequestError) as info:
        Engine().validate(filter_)
    return info.value


@pytest.mark.parametrize(("filter_", "path", "message"), [
    ({"equals": {"a": 1}, "exists": "a"}, "", "Filters must have one keyword only"),
    ({"foo": {}}, "foo", "unknown keyword"),
    ({"match": {"a": 1}}, "match", "not supported"),
    ({"equals": {"a": [1]}}, "equals.a", "must either be a string, a number, a boolean, or null"),
    ({"equals": {"a": 1, "b": 2}}, "equals", "exactly 1 property"),
    ({"in": {"a": [1, 2]}}, "in.a", 'must hold only values of type "string"'),
    ({"in": {"a": []}}, "in.a", "cannot be empty"),
    ({"ids": {"values": "a"}}, "ids.values", "must be an array"),
    ({"exists": ""}, "exists", "cannot test empty field name"),
    ({"exists": "a[nope]"}, "exists", "invalid array value"),
    ({"missing": {"field": 3}}, "missing.field", "must be a string"),
    ({"range": {"a": {"gt": "1"}}}, "range.a.gt", "must be a number"),
    ({"range": {"a": {"gt": 1, "gte": 2}}}, "range.a", "only 1 lower boundary allowed"),
    ({"range": {"a": {"gt": 2, "lt": 1}}}, "range.a", "strictly inferior"),
    ({"range": {"a": {"foo": 1}}}, "range.a", "not an allowed attribute"),
    ({"regexp": {"a": "(?=x)"}}, "regexp.a", "cannot parse regexp"),
    ({"regexp": {"a": {"value": "x", "flags": "q"}}}, "regexp.a.flags", "invalid flags"),
    ({"geoDistance": {"p": [1, 2], "distance": "3 parsecs"}}, "geoDistance.distance",
     "unable to parse distance"),
    ({"geoDistance": {"p": "no where", "distance": "3m"}}, "geoDistance.p",
     "unrecognized point format"),
    ({"geoDistanceRange": {"p": [1, 2], "from": "3km", "to": "1km"}}, "geoDistanceRange",
     "inner radius must be smaller"),
    ({"geoBoundingBox": {"p": {"top": "x", "left": 1, "bottom": 1, "right": 1}}},
     "geoBoundingBox.p", "unrecognized geoBoundingBox format"),
    ({"geoPolygon": {"p": {"points": [[1, 2], [3, 4]]}}}, "geoPolygon.p.points",
     "at least 3 points"),
    ({"geoPolygon": {"p": {"points": [[1, 2], [3, 4], "x"]}}}, "geoPolygon.p.points[2]",
     "unrecognized point format"),
    ({"and": []}, "and", "cannot be empty"),
    ({"and": [{"equals": {"a": 1}}, {}]}, "and[1]", "non-empty objects"),
    ({"or": [{"equals": {"a": 1}}, {"range": {"b": {"lt": "x"}}}]}, "or[1].range.b.lt",
     "must be a number"),
    ({"not": {"not": {"equals": {"a": {}}}}}, "not.not.equals.a", "must either be"),
    ({"bool": {"filter": []}}, "bool", "not an allowed attribute"),
    ({"bool": {"should": [{"in": {"a": [1]}}]}}, "bool.should[0].in.a", "type \"string\""),
    ("equals", "", "must be an object"),
])
def test_invalid_filters_get_400_naming_the_path(filter_, path, message):
    error = _error(filter_)
    assert error.status == 400
    assert error.id == "api.assert.koncorde_dsl_error"
    assert error.code == 0x0201000E
    assert error.path == path
    assert message in error.message
    if path:
        assert error.message.startswith(f'"{path}": ')


def test_filters_too_complex_are_refused():
    many = {"or": [{"equals": {"a": str(i)}} for i in range(51)]}
    assert "maximum number of conditions" in _error(many).message
    Engine(max_conditions=100).validate(many)
    product = {"and": [{"in": {f"f{i}": ["a", "b", "c", "d"]}} for i in range(5)]}
    engine = Engine(max_conditions=100)
    with pytest.raises(BadRequestError) as info:
        engine.validate(product)
    assert "normal form" in info.value.message


def test_missing_array_value_does_not_contradict_other_conditions():
    # Koncorde 4 drops this conjunction as impossible; it is not: "x" is no array holding "y".
    engine = Engine()
    room = engine.register("i", "c", {"and": [{"equals": {"a": "x"}}, {"missing": 'a["y"]'}]})
    assert engine.test("i", "c", {"a": "x"}) == [room]
    assert engine.test("i", "c", {"a": ["y"]}) == []


def test_negated_groups_with_geo_keywords_are_accepted():
    # Koncorde 4 refuses these ("not.geospatial": unknown keyword)
    engine = Engine()
    geo = {"geoDistance": {"p": [43.6, 3.9], "distance": "1km"}}
    room = engine.register("i", "c", {"not": {"and": [geo, {"equals": {"a": 1}}]}})
    assert engine.test("i", "c", {"p": [43.6, 3.9], "a": 2}) == [room]
    assert engine.test("i", "c", {"p": [43.6, 3.9], "a": 1}) == []


def test_boxes_must_have_their_corners_in_order():
    # Koncorde accepts these, then fails with a 500 when it stores them
    error = _error({"geoBoundingBox": {"p": {"top": -2.9, "left": 52.3, "bottom": 1.1,
                                             "right": 51.1}}})
    assert error.path == "geoBoundingBox.p" and "bottom latitude" in error.message
    error = _error({"geoBoundingBox": {"p": {"top": 2, "left": 5, "bottom": 1, "right": 4}}})
    assert "left longitude" in error.message


def test_deep_filters_are_refused_not_crashing():
    deep: dict = {"equals": {"a": 1}}
    for _ in range(2000):
        deep = {"not": deep}
    error = _error(deep)
    assert "nested too deeply" in error.message
    assert error.path.startswith("not.not.not")


def test_many_geo_shapes_through_the_grid():
    import random

    rng = random.Random(7)
    engine = Engine()
    shapes = {}
    origins = []
    for i in range(400):
        lat, lon = rng.uniform(-60, 60), rng.uniform(-170, 170)
        kind = i % 4
        if kind == 0:
            f = {"geoDistance": {"p": [lat, lon], "distance": f"{rng.randint(1, 300)}km"}}
        elif kind == 1:
            f = {"geoBoundingBox": {"p": {"top": lat + rng.uniform(0.1, 3), "left": lon,
                                          "bottom": lat, "right": lon + rng.uniform(0.1, 30)}}}
        elif kind == 2:
            f = {"geoDistanceRange": {"p": [lat, lon], "from": "10km", "to": "900km"}}
        else:
            f = {"geoPolygon": {"p": {"points": [[lat, lon], [lat + 2, lon], [lat, lon + 2]]}}}
        shapes[engine.register("i", "c", f)] = f
        origins.append((lat, lon))
    for room in list(shapes)[::5]:
        engine.remove(room)
        del shapes[room]
    from sanic_gateway.realtime.reference import matches

    found = 0
    for i in range(600):
        if i % 2:  # near a shape's origin, so that many documents match
            lat, lon = rng.choice(origins)
            doc = {"p": [lat + rng.uniform(-1, 2), lon + rng.uniform(-1, 2)]}
        else:
            doc = {"p": [rng.uniform(-62, 62), rng.uniform(-175, 175)]}
        expected = {room for room, f in shapes.items() if matches(f, doc)}
        assert set(engine.test("i", "c", doc)) == expected
        found += len(expected)
    assert found > 100, found


def test_integral_floats_are_the_same_numbers():
    engine = Engine()
    one = engine.register("i", "c", {"equals": {"a": 1}})
    assert engine.register("i", "c", {"equals": {"a": 1.0}}) == one
    assert engine.register("i", "c", {"exists": "n[1.0]"}) == engine.register(
        "i", "c", {"exists": "n[1]"})
    assert engine.register("i", "c", {"range": {"a": {"gt": 1.0}}}) == engine.register(
        "i", "c", {"range": {"a": {"gt": 1}}})
    assert engine.test("i", "c", {"a": 1.0}) == [one]


def test_unusual_values_are_handled():
    engine = Engine()
    big = engine.register("i", "c", {"equals": {"a": 10**20}})
    assert engine.register("i", "c", {"equals": {"a": 1e20}}) == big
    assert engine.test("i", "c", {"a": 10**20}) == [big]
    odd = engine.register("i", "c", {"equals": {"a": "\ud800"}})
    assert engine.test("i", "c", {"a": "\ud800"}) == [odd]


def test_regexps_on_strings_with_lone_surrogates():
    engine = Engine()
    room = engine.register("i", "c", {"regexp": {"a": "^x"}})
    negated = engine.register("i", "c", {"not": {"regexp": {"a": "^x"}}})
    assert engine.test("i", "c", {"a": "x\ud800"}) == [room]
    assert engine.test("i", "c", {"a": "\ud800"}) == [negated]


def test_load_refuses_what_is_not_a_normal_form():
    engine = Engine()
    for bad in ([[{"equals": {"a": 1, "b": 2}, "not": False}]], [[{"foo": {}}]], [["x"]]):
        with pytest.raises(ValueError):
            engine.load("i", "c", bad)


@pytest.mark.skipif(REGEXP_ENGINE != "re2", reason="google-re2 not installed")
def test_javascript_escapes_in_regexps():
    engine = Engine()
    room = engine.register("i", "c", {"regexp": {"a": "^\\u00e9\\u{1F600}\\cJ$"}})
    literal = engine.register("i", "c", {"regexp": {"a": "^\\\\u00e9$"}})
    assert engine.test("i", "c", {"a": "\u00e9\U0001F600\n"}) == [room]
    assert engine.test("i", "c", {"a": "\\u00e9"}) == [literal]
