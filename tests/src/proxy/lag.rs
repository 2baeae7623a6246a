//! Read lag: what an EC2 create made stays invisible to the describes of its kind for a while, as
//! EC2's eventual consistency allows. moto shows everything at once.

use std::sync::Mutex;
use std::time::Instant;

use super::{Fault, State};

/// One EC2 kind: its create, its describe, the element that holds its id in both answers, the
/// describe's by-id parameter, and the error a describe by an unknown id answers.
struct Kind {
    create: &'static str,
    describe: &'static str,
    id: &'static str,
    param: &'static str,
    not_found: &'static str,
}

const KINDS: [Kind; 5] = [
    Kind {
        create: "CreateVpc",
        describe: "DescribeVpcs",
        id: "vpcId",
        param: "VpcId.",
        not_found: "InvalidVpcID.NotFound",
    },
    Kind {
        create: "CreateSubnet",
        describe: "DescribeSubnets",
        id: "subnetId",
        param: "SubnetId.",
        not_found: "InvalidSubnetID.NotFound",
    },
    Kind {
        create: "CreateSecurityGroup",
        describe: "DescribeSecurityGroups",
        id: "groupId",
        param: "GroupId.",
        not_found: "InvalidGroup.NotFound",
    },
    Kind {
        create: "CreateInternetGateway",
        describe: "DescribeInternetGateways",
        id: "internetGatewayId",
        param: "InternetGatewayId.",
        not_found: "InvalidInternetGatewayID.NotFound",
    },
    Kind {
        create: "CreateRouteTable",
        describe: "DescribeRouteTables",
        id: "routeTableId",
        param: "RouteTableId.",
        not_found: "InvalidRouteTableID.NotFound",
    },
];

/// The text of the first `<tag>...</tag>` element in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..end])
}

/// After `operation` was carried out with answer `body`: the id it made, if it is a lagged create,
/// is hidden for the proxy's lag from now.
pub(super) fn made(state: &Mutex<State>, operation: &str, body: &[u8]) {
    let Some(kind) = KINDS.iter().find(|k| k.create == operation) else {
        return;
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if st.lag.is_zero() {
        return;
    }
    let xml = String::from_utf8_lossy(body);
    if let Some(id) = element(&xml, kind.id) {
        let until = Instant::now() + st.lag;
        st.hidden.push((id.to_owned(), until));
    }
}

/// What a describe answers instead, while what it shows is hidden.
pub(super) enum Hidden {
    /// The describe named a hidden id: AWS's not-found error.
    NotFound(Fault),
    /// The describe's answer without the hidden items.
    Rewritten(String),
}

/// The spans of the top-level `<item>` elements of the first set in `xml`.
fn items(xml: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let Some(mut at) = xml.find("<item>") else {
        return spans;
    };
    loop {
        // One item, nested items within it included.
        let start = at;
        let mut depth = 0usize;
        let mut i = at;
        let end = loop {
            let next_open = xml[i..].find("<item>").map(|p| p + i);
            let next_close = xml[i..].find("</item>").map(|p| p + i);
            match (next_open, next_close) {
                (Some(o), Some(c)) if o < c => {
                    depth += 1;
                    i = o + "<item>".len();
                }
                (_, Some(c)) => {
                    depth -= 1;
                    i = c + "</item>".len();
                    if depth == 0 {
                        break Some(i);
                    }
                }
                _ => break None,
            }
        };
        let Some(end) = end else { return spans };
        spans.push((start, end));
        // The next sibling, if the set goes on.
        let rest = xml[end..].trim_start();
        if !rest.starts_with("<item>") {
            return spans;
        }
        at = xml.len() - rest.len();
    }
}

/// For a describe `operation` sent with form body `request` and answered `body`: what AWS would
/// answer while the ids hidden now are not visible yet; `None` when the answer shows none of them.
pub(super) fn hide(
    state: &Mutex<State>,
    operation: &str,
    request: &str,
    body: &[u8],
) -> Option<Hidden> {
    let kind = KINDS.iter().find(|k| k.describe == operation)?;
    let hidden: Vec<String> = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        st.hidden.retain(|(_, until)| now < *until);
        st.hidden.iter().map(|(id, _)| id.clone()).collect()
    };
    if hidden.is_empty() {
        return None;
    }
    let named = request
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k.starts_with(kind.param) && hidden.iter().any(|h| h == v));
    if named {
        return Some(Hidden::NotFound(Fault::AwsError {
            status: 400,
            code: kind.not_found.to_owned(),
            message: "The ID does not exist (not visible yet)".to_owned(),
        }));
    }
    let xml = String::from_utf8_lossy(body);
    let shows = |span: &(usize, usize)| {
        let item = &xml[span.0..span.1];
        hidden
            .iter()
            .any(|h| item.contains(&format!("<{}>{h}</{}>", kind.id, kind.id)))
    };
    let spans: Vec<(usize, usize)> = items(&xml).into_iter().filter(shows).collect();
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for (start, end) in spans {
        out.push_str(&xml[at..start]);
        at = end;
    }
    out.push_str(&xml[at..]);
    Some(Hidden::Rewritten(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESCRIBED: &str = "<DescribeVpcsResponse><requestId>r</requestId><vpcSet>\n  \
        <item><vpcId>vpc-1</vpcId><tagSet><item><key>a</key></item></tagSet></item>\n  \
        <item><vpcId>vpc-2</vpcId><tagSet><item><key>b</key></item><item><key>c</key></item></tagSet></item>\n\
        </vpcSet></DescribeVpcsResponse>";

    fn lagging(ids: &[&str]) -> Mutex<State> {
        let until = Instant::now() + std::time::Duration::from_secs(60);
        Mutex::new(State {
            hidden: ids.iter().map(|id| ((*id).to_owned(), until)).collect(),
            ..State::default()
        })
    }

    #[test]
    fn the_top_level_items_of_a_set_are_found_whole() {
        let spans = items(DESCRIBED);
        assert_eq!(spans.len(), 2);
        assert!(DESCRIBED[spans[0].0..spans[0].1].starts_with("<item><vpcId>vpc-1"));
        assert!(DESCRIBED[spans[1].0..spans[1].1].ends_with("</tagSet></item>"));
        assert!(DESCRIBED[spans[1].0..spans[1].1].contains("vpc-2"));
    }

    #[test]
    fn a_describe_by_filters_leaves_out_what_is_hidden_and_one_by_id_is_not_found() {
        let state = lagging(&["vpc-2"]);
        match hide(
            &state,
            "DescribeVpcs",
            "Action=DescribeVpcs",
            DESCRIBED.as_bytes(),
        ) {
            Some(Hidden::Rewritten(xml)) => {
                assert!(xml.contains("vpc-1") && !xml.contains("vpc-2"), "{xml}");
                assert!(xml.ends_with("</vpcSet></DescribeVpcsResponse>"));
                assert_eq!(items(&xml).len(), 1);
            }
            _ => panic!("not rewritten"),
        }
        let by_id = "Action=DescribeVpcs&VpcId.1=vpc-2";
        match hide(&state, "DescribeVpcs", by_id, DESCRIBED.as_bytes()) {
            Some(Hidden::NotFound(Fault::AwsError { code, .. })) => {
                assert_eq!(code, "InvalidVpcID.NotFound");
            }
            _ => panic!("not refused"),
        }
        // Another kind's describe, or nothing hidden in the answer: as it was.
        assert!(hide(&state, "DescribeSubnets", by_id, DESCRIBED.as_bytes()).is_none());
        let other = lagging(&["vpc-9"]);
        assert!(
            hide(
                &other,
                "DescribeVpcs",
                "Action=DescribeVpcs",
                DESCRIBED.as_bytes()
            )
            .is_none()
        );
    }

    #[test]
    fn a_create_hides_what_it_made_only_while_lag_is_on() {
        let state = Mutex::new(State::default());
        let answer = b"<CreateVpcResponse><vpc><vpcId>vpc-7</vpcId></vpc></CreateVpcResponse>";
        made(&state, "CreateVpc", answer);
        assert!(state.lock().unwrap().hidden.is_empty());
        state.lock().unwrap().lag = std::time::Duration::from_secs(2);
        made(&state, "CreateVpc", answer);
        made(&state, "DescribeVpcs", answer);
        let hidden = state.lock().unwrap().hidden.clone();
        assert_eq!(hidden.len(), 1);
        assert_eq!(hidden[0].0, "vpc-7");
    }
}
