//! A diagram of the deployed platform from recorded state: stacks as subgraphs, resources as nodes,
//! dependencies as edges, and the stack references between stacks. Mermaid (as in the seed's
//! overview) or Graphviz dot.

use std::fmt::Write as _;

use platform_core::state::StackState;

/// The diagram's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

/// A node id: the stack and the resource, with anything but letters and digits as `_`.
pub fn node_id(stack: &str, resource: &str) -> String {
    format!("{stack}__{resource}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn stack_id(stack: &str) -> String {
    node_id("stack", stack)
}

/// Renders `stacks` (as recorded) in `format`. Stacks that reference another one get a dashed edge
/// labelled `StackRef` to it.
pub fn render(stacks: &[StackState], format: Format) -> String {
    let mut out = String::new();
    let _ = write_graph(&mut out, stacks, format);
    out
}

/// One walk over the stacks; only the syntax differs between the formats.
fn write_graph(out: &mut String, stacks: &[StackState], format: Format) -> std::fmt::Result {
    let mermaid = format == Format::Mermaid;
    if mermaid {
        out.push_str("graph TB\n");
    } else {
        out.push_str("digraph platform {\n    rankdir=TB;\n    compound=true;\n");
    }
    for s in stacks {
        let id = stack_id(&s.stack);
        if mermaid {
            writeln!(out, "    subgraph {id}[\"{} stack\"]", s.stack)?;
        } else {
            writeln!(out, "    subgraph cluster_{id} {{")?;
            writeln!(out, "        label=\"{} stack\";", s.stack)?;
        }
        for (name, r) in &s.resources {
            let node = node_id(&s.stack, name);
            if mermaid {
                writeln!(out, "        {node}[\"{name}<br/>{}\"]", r.kind)?;
            } else {
                writeln!(out, "        {node} [label=\"{name}\\n{}\"];", r.kind)?;
            }
        }
        out.push_str(if mermaid { "    end\n" } else { "    }\n" });
    }
    for s in stacks {
        for (name, r) in &s.resources {
            for d in &r.dependencies {
                let (from, to) = (node_id(&s.stack, d), node_id(&s.stack, name));
                if mermaid {
                    writeln!(out, "    {from} --> {to}")?;
                } else {
                    writeln!(out, "    {from} -> {to};")?;
                }
            }
        }
        for r in &s.references {
            let (from, to) = (stack_id(r), stack_id(&s.stack));
            if mermaid {
                writeln!(out, "    {from} -. StackRef .-> {to}")?;
                continue;
            }
            // Dot has no edges between subgraphs: one between a node of each, clipped at the boxes.
            let first = |stack: &str| {
                stacks
                    .iter()
                    .find(|x| x.stack == stack)
                    .and_then(|x| x.resources.keys().next())
                    .map(|n| node_id(stack, n))
            };
            if let (Some(a), Some(b)) = (first(r), first(&s.stack)) {
                writeln!(
                    out,
                    "    {a} -> {b} [style=dashed, label=\"StackRef\", ltail=cluster_{from}, lhead=cluster_{to}];"
                )?;
            }
        }
    }
    if !mermaid {
        out.push_str("}\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_core::state::ResourceState;
    use serde_json::json;

    fn state(name: &str, resources: &[(&str, &str, &[&str])], refs: &[&str]) -> StackState {
        let mut s = StackState::new(name);
        for (r, kind, deps) in resources {
            s.resources.insert(
                (*r).to_owned(),
                ResourceState {
                    kind: (*kind).to_owned(),
                    inputs: json!({}),
                    outputs: Some(json!({})),
                    dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
                    uses: Vec::new(),
                    instance: None,
                    made: None,
                    pending: None,
                    deposed: Vec::new(),
                },
            );
        }
        s.references = refs.iter().map(|r| (*r).to_owned()).collect();
        s
    }

    #[test]
    fn mermaid_has_every_resource_edge_and_reference() {
        let stacks = [
            state(
                "network",
                &[
                    ("vpc", "ec2:vpc", &[]),
                    ("subnet-0", "ec2:subnet", &["vpc"]),
                ],
                &[],
            ),
            state("cluster", &[("cluster", "ecs:cluster", &[])], &["network"]),
        ];
        let m = render(&stacks, Format::Mermaid);
        assert!(m.starts_with("graph TB\n"), "{m}");
        assert!(
            m.contains("subgraph stack__network[\"network stack\"]"),
            "{m}"
        );
        assert!(
            m.contains("network__subnet_0[\"subnet-0<br/>ec2:subnet\"]"),
            "{m}"
        );
        assert!(m.contains("network__vpc --> network__subnet_0"), "{m}");
        assert!(
            m.contains("stack__network -. StackRef .-> stack__cluster"),
            "{m}"
        );
        assert_eq!(
            m.matches("subgraph").count(),
            m.matches("    end\n").count()
        );
        let d = render(&stacks, Format::Dot);
        assert!(d.starts_with("digraph platform {"), "{d}");
        assert!(d.contains("network__vpc -> network__subnet_0;"), "{d}");
        assert!(d.contains("label=\"StackRef\""), "{d}");
    }
}
