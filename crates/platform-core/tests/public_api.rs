//! The crate's public surface, checked against `public-api.txt` so that a change to it is seen in
//! review: every `pub` item of every module (its signature, its derives and `#[non_exhaustive]`),
//! every `pub` method and trait impl, every re-export and exported macro, read from the source with
//! `syn` (offline, on the stable toolchain).
//!
//! After a deliberate change: `PUBLIC_API=bless cargo test -p platform-core --test suite public_api`
//! rewrites the file; the diff is the change to review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Attribute, Fields, ImplItem, Item, TraitItem, UseTree, Visibility};

const ROOT_NAMES_AT_MOST: usize = 30;

fn tokens(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string()
}

fn is_pub(v: &Visibility) -> bool {
    matches!(v, Visibility::Public(_))
}

fn cfg_test(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && tokens(&a.meta).replace(' ', "") == "cfg(test)")
}

/// `derive(..)` and `non_exhaustive` attributes, as they change what users may do with a type.
fn marks(attrs: &[Attribute]) -> String {
    let mut out = Vec::new();
    for a in attrs {
        if a.path().is_ident("derive") || a.path().is_ident("non_exhaustive") {
            out.push(format!("#[{}]", tokens(&a.meta)));
        }
    }
    if out.is_empty() {
        String::new()
    } else {
        format!("{} ", out.join(" "))
    }
}

fn fields(f: &Fields) -> String {
    let (open, close, list) = match f {
        Fields::Named(n) => ("{ ", " }", &n.named),
        Fields::Unnamed(u) => ("(", ")", &u.unnamed),
        Fields::Unit => return String::new(),
    };
    let mut shown: Vec<String> = Vec::new();
    let mut hidden = false;
    for field in list {
        if is_pub(&field.vis) {
            let name = field
                .ident
                .as_ref()
                .map(|i| format!("{i}: "))
                .unwrap_or_default();
            shown.push(format!("{name}{}", tokens(&field.ty)));
        } else {
            hidden = true;
        }
    }
    if hidden {
        shown.push("..".into());
    }
    format!("{open}{}{close}", shown.join(", "))
}

fn variant_fields(f: &Fields) -> String {
    match f {
        Fields::Unit => String::new(),
        Fields::Named(n) => format!(
            " {{ {} }}",
            n.named
                .iter()
                .map(|x| format!("{}: {}", x.ident.as_ref().unwrap(), tokens(&x.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Fields::Unnamed(u) => format!(
            "({})",
            u.unnamed
                .iter()
                .map(|x| tokens(&x.ty))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn use_paths(prefix: &str, tree: &UseTree, out: &mut Vec<String>) {
    match tree {
        UseTree::Path(p) => use_paths(&format!("{prefix}{}::", p.ident), &p.tree, out),
        UseTree::Name(n) => out.push(format!("{prefix}{}", n.ident)),
        UseTree::Rename(r) => out.push(format!("{prefix}{} as {}", r.ident, r.rename)),
        UseTree::Glob(_) => out.push(format!("{prefix}*")),
        UseTree::Group(g) => g.items.iter().for_each(|t| use_paths(prefix, t, out)),
    }
}

struct Walker {
    lines: BTreeSet<String>,
}

impl Walker {
    fn module(&mut self, path: &str, public: bool, file: &Path, dir: &Path) {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        self.items(path, public, &parsed.items, dir);
    }

    fn items(&mut self, path: &str, public: bool, items: &[Item], dir: &Path) {
        // Items of a private module are listed too (they may be re-exported), marked as such.
        let at = |name: &dyn std::fmt::Display| {
            if public {
                format!("{path}::{name}")
            } else {
                format!("{path}::{name} (private module)")
            }
        };
        for item in items {
            match item {
                Item::Mod(m) if !cfg_test(&m.attrs) => {
                    let name = m.ident.to_string();
                    let sub_public = public && is_pub(&m.vis);
                    let sub_path = format!("{path}::{name}");
                    if let Some((_, inline)) = &m.content {
                        self.items(&sub_path, sub_public, inline, &dir.join(&name));
                    } else {
                        let flat = dir.join(format!("{name}.rs"));
                        let (file, sub_dir) = if flat.exists() {
                            (flat, dir.join(&name))
                        } else {
                            (dir.join(&name).join("mod.rs"), dir.join(&name))
                        };
                        self.module(&sub_path, sub_public, &file, &sub_dir);
                    }
                }
                Item::Use(u) if is_pub(&u.vis) => {
                    let mut paths = Vec::new();
                    use_paths("", &u.tree, &mut paths);
                    for p in paths {
                        self.lines.insert(format!("{} = use {p}", at(&"")));
                    }
                }
                Item::Struct(s) if is_pub(&s.vis) => {
                    self.lines.insert(format!(
                        "{}: {}struct{} {}",
                        at(&s.ident),
                        marks(&s.attrs),
                        tokens(&s.generics),
                        fields(&s.fields)
                    ));
                }
                Item::Enum(e) if is_pub(&e.vis) => {
                    let variants: Vec<String> = e
                        .variants
                        .iter()
                        .map(|v| format!("{}{}", v.ident, variant_fields(&v.fields)))
                        .collect();
                    self.lines.insert(format!(
                        "{}: {}enum{} {{ {} }}",
                        at(&e.ident),
                        marks(&e.attrs),
                        tokens(&e.generics),
                        variants.join(", ")
                    ));
                }
                Item::Fn(f) if is_pub(&f.vis) => {
                    self.lines
                        .insert(format!("{}: {}", at(&f.sig.ident), tokens(&f.sig)));
                }
                Item::Const(c) if is_pub(&c.vis) => {
                    self.lines
                        .insert(format!("{}: const {}", at(&c.ident), tokens(&c.ty)));
                }
                Item::Static(s) if is_pub(&s.vis) => {
                    self.lines
                        .insert(format!("{}: static {}", at(&s.ident), tokens(&s.ty)));
                }
                Item::Type(t) if is_pub(&t.vis) => {
                    self.lines.insert(format!(
                        "{}: type{} = {}",
                        at(&t.ident),
                        tokens(&t.generics),
                        tokens(&t.ty)
                    ));
                }
                Item::Trait(t) if is_pub(&t.vis) => {
                    let head = format!(
                        "{}: trait{} : {}",
                        at(&t.ident),
                        tokens(&t.generics),
                        tokens(&t.supertraits)
                    );
                    self.lines.insert(head.clone());
                    for ti in &t.items {
                        let line = match ti {
                            TraitItem::Fn(f) => tokens(&f.sig),
                            TraitItem::Const(c) => format!("const {}: {}", c.ident, tokens(&c.ty)),
                            TraitItem::Type(ty) => {
                                format!("type {}: {}", ty.ident, tokens(&ty.bounds))
                            }
                            _ => continue,
                        };
                        self.lines.insert(format!("{head} :: {line}"));
                    }
                }
                Item::Macro(m) if m.attrs.iter().any(|a| a.path().is_ident("macro_export")) => {
                    let name = m
                        .ident
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    self.lines.insert(format!("platform_core::{name}!: macro"));
                }
                Item::Impl(i) if !cfg_test(&i.attrs) => {
                    let ty = tokens(&i.self_ty);
                    if let Some((_, t, _)) = &i.trait_ {
                        self.lines.insert(format!(
                            "impl{} {} for {ty}",
                            tokens(&i.generics),
                            tokens(t)
                        ));
                        continue;
                    }
                    for ii in &i.items {
                        if let ImplItem::Fn(f) = ii
                            && is_pub(&f.vis)
                        {
                            self.lines.insert(format!("impl {ty}: {}", tokens(&f.sig)));
                        }
                        if let ImplItem::Const(c) = ii
                            && is_pub(&c.vis)
                        {
                            self.lines.insert(format!(
                                "impl {ty}: const {}: {}",
                                c.ident,
                                tokens(&c.ty)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn surface() -> String {
    let src = crate_dir().join("src");
    let mut w = Walker {
        lines: BTreeSet::new(),
    };
    w.module("platform_core", true, &src.join("lib.rs"), &src);
    let mut out = String::new();
    for line in w.lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn the_public_surface_is_the_one_checked_in() {
    let file = crate_dir().join("public-api.txt");
    let now = surface();
    if std::env::var("PUBLIC_API").as_deref() == Ok("bless") {
        std::fs::write(&file, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&file).unwrap_or_default();
    if before != now {
        let old: BTreeSet<&str> = before.lines().collect();
        let new: BTreeSet<&str> = now.lines().collect();
        let mut diff = String::new();
        for l in old.difference(&new) {
            diff.push_str(&format!("- {l}\n"));
        }
        for l in new.difference(&old) {
            diff.push_str(&format!("+ {l}\n"));
        }
        panic!(
            "platform-core's public surface changed; if that is meant, run \
             `PUBLIC_API=bless cargo test -p platform-core --test suite public_api` and commit \
             public-api.txt:\n{diff}"
        );
    }
}

#[test]
fn the_root_holds_what_a_stack_author_and_an_embedder_touch_first() {
    let root: Vec<String> = surface()
        .lines()
        .filter_map(|l| l.strip_prefix("platform_core:: = use "))
        .map(|p| p.rsplit("::").next().unwrap().to_owned())
        .collect();
    assert!(
        root.len() <= ROOT_NAMES_AT_MOST,
        "{} names at the root (at most {ROOT_NAMES_AT_MOST}): {root:?}",
        root.len()
    );
    for name in [
        "Engine", "Stack", "Resource", "Ref", "Input", "Context", "Error",
    ] {
        assert!(
            root.iter().any(|n| n == name),
            "{name} is not at the root: {root:?}"
        );
    }
}

#[test]
fn every_public_error_enum_can_grow() {
    let surface = surface();
    // `NAME: [#[..]] enum ...` lines of types named `...Error`.
    let errors: Vec<&str> = surface
        .lines()
        .filter(|l| {
            let (item, rest) = l.split_once(": ").unwrap_or_default();
            item.ends_with("Error") && rest.contains("enum")
        })
        .collect();
    assert!(
        errors.len() >= 3,
        "the error enums were not found: {errors:?}"
    );
    for e in errors {
        assert!(
            e.contains("#[non_exhaustive]"),
            "not #[non_exhaustive]: {e}"
        );
    }
}
