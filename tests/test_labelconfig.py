import pytest

from uie_backend.labelconfig import LabelConfigError, SpanControl, parse_label_config

RECORDED_CONFIG = """<View>
  <Labels name="label" toName="text">
  <Label value="地名" background="#FFA39E"/>
  <Label value="人名" background="#D4380D"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


def test_recorded_config_gives_one_control():
    assert parse_label_config(RECORDED_CONFIG).spans == (SpanControl("label", "text", "text", ("地名", "人名")),)


def test_names_and_field_are_read_not_assumed():
    xml = """<View><Text name="doc" value="$content"/>
      <Labels name="ner" toName="doc"><Label value="ORG"/></Labels></View>"""
    [control] = parse_label_config(xml).spans
    assert (control.from_name, control.to_name, control.data_field) == ("ner", "doc", "content")


def test_nested_views_and_duplicate_labels():
    xml = """<View><View><View>
      <Labels name="ner" toName="doc"><Label value="A"/><Label value="B"/><Label value="A"/></Labels>
    </View></View><View><Text name="doc" value="$body"/></View></View>"""
    [control] = parse_label_config(xml).spans
    assert control.labels == ("A", "B")
    assert control.data_field == "body"


def test_two_labels_controls_and_schema_labels_union():
    xml = """<View>
      <Text name="title" value="$title"/><Text name="body" value="$body"/>
      <Labels name="t_ner" toName="title"><Label value="产品"/><Label value="品牌"/></Labels>
      <Labels name="b_ner" toName="body"><Label value="品牌"/><Label value="颜色"/></Labels>
    </View>"""
    schema = parse_label_config(xml)
    assert [(c.from_name, c.data_field) for c in schema.spans] == [("t_ner", "title"), ("b_ner", "body")]
    assert schema.labels == ["产品", "品牌", "颜色"]


def test_to_name_list_keeps_only_text_objects():
    xml = """<View><Text name="a" value="$a"/><Image name="img" value="$image"/><Text name="b" value="$b"/>
      <Labels name="ner" toName="a, img,b"><Label value="X"/></Labels></View>"""
    assert [(c.to_name, c.data_field) for c in parse_label_config(xml).spans] == [("a", "a"), ("b", "b")]


def test_controls_of_other_objects_are_ignored():
    xml = """<View><Text name="t" value="$text"/>
      <Choices name="sentiment" toName="t"><Choice value="pos"/></Choices>
      <RectangleLabels name="boxes" toName="img"><Label value="car"/></RectangleLabels>
      <Image name="img" value="$image"/>
      <Labels name="ner" toName="t"><Label value="X"/></Labels></View>"""
    schema = parse_label_config(xml)
    assert [c.from_name for c in schema.spans] == ["ner"] and [c.from_name for c in schema.choices] == ["sentiment"]


def test_tag_case_is_ignored_like_label_studio():
    xml = '<view><text name="t" value="$text"/><labels name="ner" toName="t"><label value="X"/></labels></view>'
    assert parse_label_config(xml).spans[0].labels == ("X",)


@pytest.mark.parametrize("bad", [None, "", "   ", 42])
def test_empty_or_non_string_config(bad):
    with pytest.raises(LabelConfigError, match="empty or not a string"):
        parse_label_config(bad)


def test_malformed_xml():
    with pytest.raises(LabelConfigError, match="not well-formed"):
        parse_label_config('<View><Labels name="ner" toName="t"></View>')


@pytest.mark.parametrize("xml", [
    '<!DOCTYPE View [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><View><Text name="t" value="&b;"/></View>',
    '<!DOCTYPE View SYSTEM "http://example.com/evil.dtd"><View/>',
    '<?xml version="1.0"?>\n<!DOCTYPE View><View><Text name="t" value="$text"/></View>',
])
def test_doctype_and_entities_are_rejected(xml):
    with pytest.raises(LabelConfigError, match="DOCTYPE"):
        parse_label_config(xml)


def test_billion_laughs_is_refused_before_parsing():
    entities = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    xml = f'<!DOCTYPE View [{entities}]><View><Text name="t" value="&l9;"/></View>'
    with pytest.raises(LabelConfigError, match="DOCTYPE"):
        parse_label_config(xml)


def test_xml_declaration_is_accepted():
    xml = '<?xml version="1.0" encoding="UTF-8"?>' + RECORDED_CONFIG
    assert parse_label_config(xml).spans[0].labels == ("地名", "人名")


def test_no_control_on_text():
    xml = '<View><Text name="t" value="$text"/><Header value="nothing to label"/></View>'
    with pytest.raises(LabelConfigError, match="no <Labels> or <Choices> control bound to a <Text>"):
        parse_label_config(xml)


CHNSENTICORP = """<View><Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="正向"/><Choice value="负向"/></Choices></View>"""


def test_choices_on_text_alone_is_a_classification_schema():
    schema = parse_label_config(CHNSENTICORP)
    [control] = schema.choices
    assert schema.spans == () and schema.labels == []
    assert (control.from_name, control.data_field, control.options) == ("sentiment", "text", ("正向", "负向"))
    assert (control.per_region, control.multiple) == (False, False)
    assert control.prompt() == "sentiment[正向,负向]"  # the name is the prefix unless prompt= says otherwise


def test_prompt_attribute_per_region_and_multiple_choices():
    xml = """<View><Text name="text" value="$text"/>
      <Labels name="label" toName="text"><Label value="产品"/></Labels>
      <Choices name="opinion" prompt="情感倾向" toName="text" perRegion="true"><Choice value="正向"/><Choice value="负向"/></Choices>
      <Choices name="topics" toName="text" choice="multiple"><Choice value="价格"/><Choice value="质量"/></Choices>
    </View>"""
    schema = parse_label_config(xml)
    [region], [text] = schema.region_choices, schema.text_choices
    assert region.prompt(subject="手机") == "手机的情感倾向[正向,负向]" and region.per_region
    assert text.multiple and text.options == ("价格", "质量")


def test_relations_give_predicates():
    xml = """<View><Relations><Relation value="父亲"/><Relation value="出生地"/></Relations>
      <Labels name="label" toName="text"><Label value="人物"/><Label value="地点"/></Labels>
      <Text name="text" value="$text"/></View>"""
    schema = parse_label_config(xml)
    assert schema.predicates == ("父亲", "出生地") and schema.labels == ["人物", "地点"]


@pytest.mark.parametrize("xml, message", [
    ('<View><Text name="t" value="$text"/><Relations><Relation value="父亲"/></Relations>'
     '<Choices name="c" toName="t"><Choice value="x"/></Choices></View>', "<Relations> needs a <Labels>"),
    ('<View><Image name="img" value="$image"/><Choices name="c" toName="img"><Choice value="x"/></Choices></View>',
     "<Choices name='c'> labels img, which is not a <Text>"),
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a,b"/></Choices></View>',
     "contains one of"),
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value=""/></Choices></View>',
     "a <Choice> has no value"),
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t" value="$options"/></View>',
     "no <Labels> or <Choices> control"),  # dynamic options: nothing to prompt with
    ('<View><Text name="t" value="$text"/><Choices name="a" toName="t"><Choice value="是"/></Choices>'
     '<Choices name="b" toName="t"><Choice value="是"/></Choices></View>', "'是' is in <Choices name='a'> and"),
    ('<View><Text name="t" value="$text"/><Choices name="c" toName="t" perRegion="true"><Choice value="x"/>'
     '</Choices></View>', "perRegion"),
])
def test_bad_relation_and_choices_configs_say_what_is_wrong(xml, message):
    with pytest.raises(LabelConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_label_config(xml)


def test_labels_bound_only_to_non_text_is_not_enough():
    xml = '<View><HyperText name="h" value="$html"/><Labels name="ner" toName="h"><Label value="X"/></Labels></View>'
    with pytest.raises(LabelConfigError, match="no <Labels> or <Choices> control bound"):
        parse_label_config(xml)


def test_labels_without_label_values():
    xml = '<View><Text name="t" value="$text"/><Labels name="ner" toName="t"></Labels></View>'
    with pytest.raises(LabelConfigError, match="'ner'> has no <Label"):
        parse_label_config(xml)


def test_text_value_must_be_a_field_reference():
    xml = '<View><Text name="t" value="literal words"/><Labels name="ner" toName="t"><Label value="X"/></Labels></View>'
    with pytest.raises(LabelConfigError, match=r"<Text name='t'>.*\$field"):
        parse_label_config(xml)
