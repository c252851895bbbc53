//! A typed builder for `tree=` expressions (jenkins-wire.md §3.9): fields, nested selections and
//! ranges, rendered in Stapler's grammar. Asking for exactly what is needed keeps responses small
//! on large controllers.
//!
//! ```
//! use jenkins::tree::{Tree, Range};
//! let t = Tree::new().field("name").field("color").nested_range("builds", Tree::new().field("number").field("result"), Range::first(5));
//! assert_eq!(t.to_string(), "name,color,builds[number,result]{0,5}");
//! ```

use std::fmt;

/// A slice of a collection: `{N,M}` = elements `N..M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: Option<usize>,
    pub end: Option<usize>,
}

impl Range {
    /// The first `n` elements: `{0,n}`.
    pub fn first(n: usize) -> Self {
        Range { start: Some(0), end: Some(n) }
    }
    /// Elements `start..end`.
    pub fn between(start: usize, end: usize) -> Self {
        Range { start: Some(start), end: Some(end) }
    }
    /// Elements from `start` on: `{N,}`.
    pub fn from(start: usize) -> Self {
        Range { start: Some(start), end: None }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.start, self.end) {
            (Some(s), Some(e)) => write!(f, "{{{s},{e}}}"),
            (Some(s), None) => write!(f, "{{{s},}}"),
            (None, Some(e)) => write!(f, "{{,{e}}}"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    children: Option<Tree>,
    range: Option<Range>,
}

/// A `tree=` selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree(Vec<Node>);

impl Tree {
    pub fn new() -> Self {
        Tree(Vec::new())
    }
    /// Selects a property. Names containing the grammar's special characters are skipped:
    /// they cannot name a Jenkins property and would corrupt the expression.
    pub fn field(mut self, name: &str) -> Self {
        if valid(name) {
            self.0.push(Node { name: name.to_string(), children: None, range: None });
        }
        self
    }
    /// Selects several properties.
    pub fn fields(self, names: &[&str]) -> Self {
        names.iter().fold(self, |t, n| t.field(n))
    }
    /// Selects a property and, inside it, `children`.
    pub fn nested(mut self, name: &str, children: Tree) -> Self {
        if valid(name) {
            self.0.push(Node { name: name.to_string(), children: Some(children), range: None });
        }
        self
    }
    /// Like [`Tree::nested`], limited to a range of the collection.
    pub fn nested_range(mut self, name: &str, children: Tree, range: Range) -> Self {
        if valid(name) {
            self.0.push(Node { name: name.to_string(), children: Some(children), range: Some(range) });
        }
        self
    }
    /// `jobs[name,url,color,jobs[...]]` nested `depth` levels: one request lists a folder tree.
    pub fn jobs_recursive(fields: &[&str], depth: usize) -> Tree {
        let mut inner = Tree::new().fields(fields);
        for _ in 1..depth {
            inner = Tree::new().fields(fields).nested("jobs", inner);
        }
        Tree::new().nested("jobs", inner)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn valid(name: &str) -> bool {
    !name.is_empty() && !name.contains([',', '[', ']', '{', '}'])
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&n.name)?;
            if let Some(c) = &n.children {
                write!(f, "[{c}]")?;
            }
            if let Some(r) = &n.range {
                write!(f, "{r}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_stapler_grammar() {
        assert_eq!(Tree::jobs_recursive(&["name", "color"], 2).to_string(), "jobs[name,color,jobs[name,color]]");
        assert_eq!(Range::from(3).to_string(), "{3,}");
        assert_eq!(Tree::new().field("a,b").field("ok").to_string(), "ok");
        let t = Tree::new().nested_range("allBuilds", Tree::new().field("number"), Range::between(10, 20));
        assert_eq!(t.to_string(), "allBuilds[number]{10,20}");
    }
}
