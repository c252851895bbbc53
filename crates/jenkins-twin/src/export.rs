//! The remote-API serializer, modelled on Stapler's `export` package (jenkins-wire.md §3).
//!
//! Model objects are turned into [`Bean`]s: a class name and its exported properties, each with a
//! visibility. Properties are grouped per class level; each group is sorted alphabetically and the
//! superclass group comes first, exactly as Stapler's `Model` orders them. Nested model objects
//! can be [`Value::Lazy`], so a deep object graph (10,000 jobs, every build) is only materialised
//! where the pruner (`depth=` or `tree=`) will actually write it.

use std::fmt::Write as _;

/// A value of an exported property.
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// A Java double: written like `Double.toString` for ordinary magnitudes (`0.0`, `74.678`).
    Float(f64),
    Str(String),
    List(Vec<Value<'a>>),
    /// A nested exported object, built eagerly (small value objects: causes, parameters...).
    Bean(Box<Bean<'a>>),
    /// A nested exported object built only if it is going to be written.
    Lazy(Box<dyn Fn() -> Bean<'a> + 'a>),
    /// An object that is not exportable: written as `{}` (most actions).
    Opaque,
    /// An inline map (e.g. a node's `monitorData`): keys as written, no `_class`.
    Map(Vec<(String, Value<'a>)>),
}

impl<'a> Value<'a> {
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }
    pub fn opt_str(s: Option<impl Into<String>>) -> Self {
        s.map_or(Value::Null, |s| Value::Str(s.into()))
    }
    pub fn bean(b: Bean<'a>) -> Self {
        Value::Bean(Box::new(b))
    }
    pub fn lazy(f: impl Fn() -> Bean<'a> + 'a) -> Self {
        Value::Lazy(Box::new(f))
    }
    pub fn int(n: impl TryInto<i64>) -> Self {
        Value::Int(n.try_into().unwrap_or(i64::MAX))
    }
}

/// One exported property.
pub struct Prop<'a> {
    pub name: &'static str,
    pub visibility: i32,
    /// Inline properties do not add a nesting level for `depth=` (Stapler `@Exported(inline=true)`).
    pub inline: bool,
    pub value: Value<'a>,
}

/// An exported object: its Java class and its properties in write order.
pub struct Bean<'a> {
    pub class: String,
    /// Whether `_class` is written when this bean is nested: Stapler's IF_NEEDED rule writes it
    /// when the runtime class differs from the declared type of the property.
    pub class_when_nested: bool,
    pub props: Vec<Prop<'a>>,
}

impl<'a> Bean<'a> {
    /// A bean whose `_class` is written wherever it appears.
    pub fn new(class: impl Into<String>) -> Self {
        Bean { class: class.into(), class_when_nested: true, props: Vec::new() }
    }
    /// A bean whose runtime class equals its declared type: no `_class` when nested.
    pub fn plain(class: impl Into<String>) -> Self {
        Bean { class: class.into(), class_when_nested: false, props: Vec::new() }
    }
    /// Adds the properties declared by one class of the hierarchy, sorted by name as Stapler
    /// does. Call once per class, superclass first. A property already present from a superclass
    /// moves to this position (an overridden, re-exported getter).
    pub fn group(mut self, mut props: Vec<Prop<'a>>) -> Self {
        props.sort_by(|a, b| a.name.cmp(b.name));
        self.props.retain(|p| !props.iter().any(|q| q.name == p.name));
        self.props.extend(props);
        self
    }
}

/// A property with the default visibility (1).
pub fn p<'a>(name: &'static str, value: Value<'a>) -> Prop<'a> {
    Prop { name, visibility: 1, inline: false, value }
}
/// A property with an explicit visibility.
pub fn pv<'a>(name: &'static str, visibility: i32, value: Value<'a>) -> Prop<'a> {
    Prop { name, visibility, inline: false, value }
}
/// An inline property.
pub fn pi<'a>(name: &'static str, visibility: i32, value: Value<'a>) -> Prop<'a> {
    Prop { name, visibility, inline: true, value }
}

// ---------------------------------------------------------------------------------------------
// tree= grammar

/// A parsed `tree=` expression node (stapler `NamedPathPruner.Tree`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tree {
    pub children: Vec<(String, Tree)>,
    pub range: Option<(usize, usize)>,
}

impl Tree {
    fn child(&self, name: &str) -> Option<&Tree> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.children.iter().find(|(n, _)| n == "*"))
            .map(|(_, t)| t)
    }
}

/// Parses a `tree=` expression. The error text mirrors Stapler's ("expected ... at N").
pub fn parse_tree(spec: &str) -> Result<Tree, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut pos = 0;
    let tree = parse_list(&chars, &mut pos)?;
    if pos != chars.len() {
        return Err(format!(
            "Malformed tree expression: java.lang.IllegalArgumentException: unexpected '{}' at {pos}",
            chars[pos]
        ));
    }
    Ok(tree)
}

fn parse_list(c: &[char], pos: &mut usize) -> Result<Tree, String> {
    let mut tree = Tree::default();
    loop {
        let start = *pos;
        while *pos < c.len() && !matches!(c[*pos], ',' | '[' | ']' | '{' | '}') {
            *pos += 1;
        }
        let name: String = c[start..*pos].iter().collect();
        if name.is_empty() {
            return Err(format!(
                "Malformed tree expression: java.lang.IllegalArgumentException: expected name at {start}"
            ));
        }
        let mut child = Tree::default();
        if *pos < c.len() && c[*pos] == '[' {
            *pos += 1;
            child = parse_list(c, pos)?;
            if *pos >= c.len() || c[*pos] != ']' {
                return Err(format!(
                    "Malformed tree expression: java.lang.IllegalArgumentException: expected ']' at {pos}"
                ));
            }
            *pos += 1;
        }
        if *pos < c.len() && c[*pos] == '{' {
            *pos += 1;
            let start = *pos;
            while *pos < c.len() && c[*pos] != '}' {
                *pos += 1;
            }
            if *pos >= c.len() {
                return Err(format!(
                    "Malformed tree expression: java.lang.IllegalArgumentException: expected '}}' at {pos}"
                ));
            }
            let body: String = c[start..*pos].iter().collect();
            *pos += 1;
            child.range = Some(parse_range(&body).ok_or_else(|| {
                format!("Malformed tree expression: java.lang.IllegalArgumentException: bad range '{body}' at {start}")
            })?);
        }
        tree.children.push((name, child));
        if *pos < c.len() && c[*pos] == ',' {
            *pos += 1;
            continue;
        }
        return Ok(tree);
    }
}

fn parse_range(body: &str) -> Option<(usize, usize)> {
    let num = |s: &str| s.trim().parse::<usize>().ok();
    match body.split_once(',') {
        None => {
            let n = num(body)?;
            Some((n, n.saturating_add(1)))
        }
        Some((a, b)) => {
            let lo = if a.trim().is_empty() { 0 } else { num(a)? };
            let hi = if b.trim().is_empty() { usize::MAX } else { num(b)? };
            Some((lo, hi))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pruning

/// Which properties get written (stapler `TreePruner`).
#[derive(Clone, Copy)]
pub enum Pruner<'t> {
    /// `ByDepth(n)`: a property is written if its visibility is at least `n`.
    Depth(i32),
    Tree(&'t Tree),
}

impl<'t> Pruner<'t> {
    /// The pruner for the top-level object of `?depth=N` (Stapler: `ByDepth(1 - depth)`).
    pub fn for_depth(depth: i32) -> Self {
        Pruner::Depth(1 - depth)
    }

    fn accept(&self, prop: &Prop) -> Option<Pruner<'t>> {
        match *self {
            Pruner::Depth(n) => {
                if prop.visibility < n {
                    None
                } else if prop.inline {
                    Some(Pruner::Depth(n))
                } else {
                    Some(Pruner::Depth(n + 1))
                }
            }
            Pruner::Tree(t) => t.child(prop.name).map(Pruner::Tree),
        }
    }

    fn range(&self) -> Option<(usize, usize)> {
        match self {
            Pruner::Tree(t) => t.range,
            Pruner::Depth(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// writers

/// The output flavour of `/api/*`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    Json,
    Python,
}

/// Serialises a top-level bean as JSON (or Python literal syntax) the way Stapler does.
pub fn to_json(bean: &Bean, pruner: Pruner, pretty: bool, flavor: Flavor) -> String {
    let mut w = JsonWriter { out: String::new(), pretty, flavor };
    w.bean(bean, pruner, 0, true);
    w.out
}

struct JsonWriter {
    out: String,
    pretty: bool,
    flavor: Flavor,
}

impl JsonWriter {
    fn indent(&mut self, level: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str("  ");
            }
        }
    }

    fn key(&mut self, k: &str, level: usize, first: bool) {
        if !first {
            self.out.push(',');
        }
        self.indent(level);
        write_json_string(&mut self.out, k);
        self.out.push_str(if self.pretty { " : " } else { ":" });
    }

    fn close(&mut self, level: usize, empty: bool, ch: char) {
        if empty && self.pretty {
            // Stapler prints an empty array/object as an indentation-only line.
            self.indent(level + 1);
        }
        self.indent(level);
        self.out.push(ch);
    }

    fn bean(&mut self, bean: &Bean, pruner: Pruner, level: usize, top: bool) {
        self.out.push('{');
        let mut first = true;
        if top || bean.class_when_nested {
            self.key("_class", level + 1, first);
            write_json_string(&mut self.out, &bean.class);
            first = false;
        }
        for prop in &bean.props {
            let Some(child) = pruner.accept(prop) else { continue };
            self.key(prop.name, level + 1, first);
            first = false;
            self.value(&prop.value, child, level + 1);
        }
        self.close(level, first, '}');
    }

    fn value(&mut self, v: &Value, pruner: Pruner, level: usize) {
        match v {
            Value::Null => self.out.push_str(if self.flavor == Flavor::Python { "None" } else { "null" }),
            Value::Bool(b) => self.out.push_str(match (self.flavor, b) {
                (Flavor::Python, true) => "True",
                (Flavor::Python, false) => "False",
                (_, true) => "true",
                (_, false) => "false",
            }),
            Value::Int(n) => {
                let _ = write!(self.out, "{n}");
            }
            Value::Float(f) => write_float(&mut self.out, *f),
            Value::Str(s) => write_json_string(&mut self.out, s),
            Value::List(items) => {
                self.out.push('[');
                let (lo, hi) = pruner.range().unwrap_or((0, usize::MAX));
                let mut first = true;
                for item in items.iter().skip(lo).take(hi.saturating_sub(lo)) {
                    if !first {
                        self.out.push(',');
                    }
                    first = false;
                    self.indent(level + 1);
                    self.value(item, pruner, level + 1);
                }
                self.close(level, first, ']');
            }
            Value::Bean(b) => self.bean(b, pruner, level, false),
            Value::Lazy(f) => {
                let b = f();
                self.bean(&b, pruner, level, false)
            }
            Value::Opaque => {
                self.out.push('{');
                self.close(level, true, '}');
            }
            Value::Map(entries) => {
                self.out.push('{');
                let mut first = true;
                for (k, v) in entries {
                    self.key(k, level + 1, first);
                    first = false;
                    self.value(v, pruner, level + 1);
                }
                self.close(level, first, '}');
            }
        }
    }
}

fn write_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        let _ = write!(out, "{f:.1}");
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Writes a JSON string the way Stapler ≥ 1.260 (Jenkins 2.242+) does: `"` and `\` escaped,
/// every ISO control character and every UTF-16 surrogate as lower-case `\uXXXX`, everything
/// else raw UTF-8 (jenkins-wire.md §3.5).
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) > 0xFFFF => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Serialises a bean as Stapler's XML flavour: root element = decapitalised simple class name,
/// `_class` as a single-quoted attribute, list elements named by the singular of the property,
/// nulls omitted (jenkins-wire.md §3.10).
pub fn to_xml(bean: &Bean, pruner: Pruner) -> String {
    let mut out = String::new();
    let root = xml_root_name(&bean.class);
    xml_bean(&mut out, &root, bean, pruner, true);
    out
}

fn xml_root_name(class: &str) -> String {
    let simple = class.rsplit(['.', '$']).next().unwrap_or(class);
    let mut chars = simple.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "object".into(),
    }
}

fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = name.strip_suffix('s') {
        stem.to_string()
    } else {
        name.to_string()
    }
}

fn xml_bean(out: &mut String, tag: &str, bean: &Bean, pruner: Pruner, top: bool) {
    out.push('<');
    out.push_str(tag);
    if top || bean.class_when_nested {
        out.push_str(" _class='");
        xml_escape(out, &bean.class);
        out.push('\'');
    }
    out.push('>');
    for prop in &bean.props {
        let Some(child) = pruner.accept(prop) else { continue };
        xml_value(out, prop.name, &prop.value, child);
    }
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

fn xml_value(out: &mut String, tag: &str, v: &Value, pruner: Pruner) {
    match v {
        Value::Null => {}
        Value::Bool(b) => {
            let _ = write!(out, "<{tag}>{b}</{tag}>");
        }
        Value::Int(n) => {
            let _ = write!(out, "<{tag}>{n}</{tag}>");
        }
        Value::Float(f) => {
            let mut s = String::new();
            write_float(&mut s, *f);
            let _ = write!(out, "<{tag}>{s}</{tag}>");
        }
        Value::Str(s) => {
            let _ = write!(out, "<{tag}>");
            xml_escape(out, s);
            let _ = write!(out, "</{tag}>");
        }
        Value::List(items) => {
            let name = singular(tag);
            let (lo, hi) = pruner.range().unwrap_or((0, usize::MAX));
            for item in items.iter().skip(lo).take(hi.saturating_sub(lo)) {
                xml_value(out, &name, item, pruner);
            }
        }
        Value::Bean(b) => xml_bean(out, tag, b, pruner, false),
        Value::Lazy(f) => xml_bean(out, tag, &f(), pruner, false),
        Value::Opaque => {
            let _ = write!(out, "<{tag}/>");
        }
        Value::Map(entries) => {
            let _ = write!(out, "<{tag}>");
            for (k, v) in entries {
                xml_value(out, k, v, pruner);
            }
            let _ = write!(out, "</{tag}>");
        }
    }
}

/// Escapes text for XML content and single-quoted attributes.
pub fn xml_escape(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> Bean<'a> {
        Bean::new("hudson.model.Queue$BlockedItem")
            .group(vec![
                p("why", Value::str("x")),
                p("id", Value::Int(3)),
                p("actions", Value::List(vec![Value::Opaque])),
                p("blocked", Value::Bool(true)),
                pv(
                    "task",
                    1,
                    Value::lazy(|| {
                        Bean::new("hudson.model.FreeStyleProject")
                            .group(vec![pv("name", 999, Value::str("t"))])
                            .group(vec![pv("color", 2, Value::str("blue"))])
                    }),
                ),
            ])
            .group(vec![p("buildableStartMilliseconds", Value::Int(5))])
    }

    #[test]
    fn compact_orders_groups_and_sorts_within() {
        let s = to_json(&sample(), Pruner::for_depth(0), false, Flavor::Json);
        assert_eq!(
            s,
            r#"{"_class":"hudson.model.Queue$BlockedItem","actions":[{}],"blocked":true,"id":3,"task":{"_class":"hudson.model.FreeStyleProject","name":"t","color":"blue"},"why":"x","buildableStartMilliseconds":5}"#
        );
    }

    #[test]
    fn pretty_matches_stapler_layout() {
        let b = Bean::new("X").group(vec![p("a", Value::List(vec![])), p("b", Value::Int(1))]);
        let s = to_json(&b, Pruner::for_depth(0), true, Flavor::Json);
        assert_eq!(s, "{\n  \"_class\" : \"X\",\n  \"a\" : [\n    \n  ],\n  \"b\" : 1\n}");
    }

    #[test]
    fn depth_hides_low_visibility_nested_properties() {
        let b = Bean::new("X").group(vec![p(
            "job",
            Value::bean(Bean::plain("Y").group(vec![pv("color", 2, Value::str("red")), p("low", Value::Int(1))])),
        )]);
        assert_eq!(to_json(&b, Pruner::for_depth(0), false, Flavor::Json), r#"{"_class":"X","job":{"color":"red"}}"#);
        assert_eq!(
            to_json(&b, Pruner::for_depth(1), false, Flavor::Json),
            r#"{"_class":"X","job":{"color":"red","low":1}}"#
        );
    }

    #[test]
    fn tree_selects_and_ranges() {
        let b = Bean::new("X").group(vec![
            p(
                "builds",
                Value::List(
                    (1..=5).map(|n| Value::bean(Bean::new("B").group(vec![p("number", Value::Int(n))]))).collect(),
                ),
            ),
            pv("allBuilds", -2, Value::List(vec![])),
            p("name", Value::str("n")),
        ]);
        let t = parse_tree("builds[number]{1,3},allBuilds").unwrap_or_default();
        assert_eq!(
            to_json(&b, Pruner::Tree(&t), false, Flavor::Json),
            r#"{"_class":"X","allBuilds":[],"builds":[{"_class":"B","number":2},{"_class":"B","number":3}]}"#
        );
        let t = parse_tree("builds").unwrap_or_default();
        assert!(to_json(&b, Pruner::Tree(&t), false, Flavor::Json).contains(r#"[{"_class":"B"},"#));
    }

    #[test]
    fn tree_grammar_ranges_and_errors() {
        let r = |s: &str| parse_tree(s).ok().and_then(|t| t.children.first().and_then(|c| c.1.range));
        assert_eq!(r("a{,3}"), Some((0, 3)));
        assert_eq!(r("a{3}"), Some((3, 4)));
        assert_eq!(r("a{3,}"), Some((3, usize::MAX)));
        assert_eq!(r("a{1,4}"), Some((1, 4)));
        assert!(parse_tree("a[b").is_err());
        assert!(parse_tree("a,,b").is_err());
        assert!(parse_tree("a{x}").is_err());
    }

    #[test]
    fn strings_escape_controls_and_surrogates() {
        let mut s = String::new();
        write_json_string(&mut s, "a\nb\t\"\\/»😀\u{7f}");
        assert_eq!(s, "\"a\\u000ab\\u0009\\\"\\\\/»\\ud83d\\ude00\\u007f\"");
    }

    #[test]
    fn python_flavor_uses_python_literals() {
        let b = Bean::new("X").group(vec![p("a", Value::Null), p("b", Value::Bool(true))]);
        assert_eq!(to_json(&b, Pruner::for_depth(0), false, Flavor::Python), r#"{"_class":"X","a":None,"b":True}"#);
    }

    #[test]
    fn xml_flavor() {
        let b = Bean::new("hudson.model.Hudson").group(vec![
            p("jobs", Value::List(vec![Value::bean(Bean::new("F").group(vec![pv("name", 999, Value::str("a<b"))]))])),
            p("description", Value::Null),
            p("useCrumbs", Value::Bool(true)),
        ]);
        assert_eq!(
            to_xml(&b, Pruner::for_depth(0)),
            "<hudson _class='hudson.model.Hudson'><job _class='F'><name>a&lt;b</name></job><useCrumbs>true</useCrumbs></hudson>"
        );
        assert_eq!(xml_root_name("hudson.model.Queue$BlockedItem"), "blockedItem");
    }
}
