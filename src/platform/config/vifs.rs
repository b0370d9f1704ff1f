//! The `vif` list read: each interface's number, MAC and addresses (public
//! with `pbn`, private VLAN with `pvn`), every problem placed by its field.

use super::*;

pub(super) fn vifs(r: &mut Reader, doc: &Node, c: &mut Config) {
    let field = doc.get("vif");
    c.has_vif = field.is_some_and(|f| !matches!(f.value, Value::Null));
    if let Some(f) = field
        && !matches!(f.value, Value::Array(_) | Value::Null)
    {
        r.bad(
            field,
            "vif",
            format!("expected a list of interfaces, found {}", f.value.kind()),
        );
        c.unusable
            .insert(0, "the vif field could not be read".into());
        return;
    }
    let mut seen = BTreeSet::new();
    let mut lost_entry = false;
    for (i, node) in r.list(field, "vif").into_iter().enumerate() {
        let base = format!("vif[{i}]");
        if !matches!(node.value, Value::Object(_)) {
            r.bad(
                Some(node),
                &base,
                format!(
                    "expected an interface (an object), found {}",
                    node.value.kind()
                ),
            );
            lost_entry = true;
            continue;
        }
        r.twice(node, &base, VIF);
        r.unknown(node, &base, VIF);
        let num_node = node.get("vif_number");
        let number = match num_node.map(|n| (&n.value, n.as_u64())) {
            Some((_, Some(n))) if n <= MAX_VIF => n as u32,
            Some((Value::Number(n), _)) => {
                r.bad(
                    num_node,
                    &format!("{base}.vif_number"),
                    format!("{n} is not an interface number from 0 to {MAX_VIF}"),
                );
                lost_entry = true;
                continue;
            }
            Some((v, _)) => {
                r.bad(
                    num_node,
                    &format!("{base}.vif_number"),
                    format!("expected a number, found {}", v.kind()),
                );
                lost_entry = true;
                continue;
            }
            None => {
                r.bad(Some(node), &base, "vif_number is missing".into());
                lost_entry = true;
                continue;
            }
        };
        if !seen.insert(number) {
            r.bad(
                num_node,
                &format!("{base}.vif_number"),
                format!("eth{number} appears twice: this entry is left out"),
            );
            continue;
        }
        let mac_path = format!("{base}.mac");
        let mac = match r.string(node.get("mac"), &mac_path) {
            Some(m) if valid_mac(m) => Some(m.to_ascii_lowercase()),
            Some(m) => {
                r.bad(
                    node.get("mac"),
                    &mac_path,
                    format!("{m:?} is not a MAC address: eth{number} is matched by name"),
                );
                None
            }
            None => None,
        };
        let mut addrs = Vec::new();
        let mut bad_addr = None;
        for (j, pna) in r
            .list(node.get("pna"), &format!("{base}.pna"))
            .into_iter()
            .enumerate()
        {
            let path = format!("{base}.pna[{j}]");
            match address(r, pna, &path) {
                Some(a) => addrs.push(a),
                None => bad_addr = Some(path),
            }
        }
        if let Some(path) = bad_addr
            && !addrs.iter().any(|a| a.addr.is_ipv4())
        {
            c.unusable
                .insert(number, format!("{path} could not be used"));
        }
        c.vifs.push(Vif { number, mac, addrs });
    }
    if lost_entry && !seen.contains(&0) {
        c.unusable.insert(
            0,
            "an interface entry could not be read, and none names eth0".into(),
        );
    }
}

pub(super) fn address(r: &mut Reader, pna: &Node, path: &str) -> Option<Addr> {
    if !matches!(pna.value, Value::Object(_)) {
        r.bad(
            Some(pna),
            path,
            format!(
                "expected an address (an object), found {}",
                pna.value.kind()
            ),
        );
        return None;
    }
    let a_node = pna.get("pna_address");
    let addr = match r.string(a_node, &format!("{path}.pna_address")) {
        Some(s) => match s.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                r.bad(
                    a_node,
                    &format!("{path}.pna_address"),
                    format!("{s:?} is not an IP address"),
                );
                return None;
            }
        },
        None => {
            if a_node.is_none() {
                r.bad(Some(pna), path, "pna_address is missing".into());
            }
            return None;
        }
    };
    r.unknown(pna, path, PNA);
    // A public network (`pbn`) or a private VLAN (`pvn`).
    let (kind, fields, private) = match (pna.get("pbn"), pna.get("pvn")) {
        (Some(_), Some(_)) => {
            r.bad(
                Some(pna),
                path,
                "both pbn and pvn given: neither is used".into(),
            );
            return None;
        }
        (_, Some(_)) => ("pvn", PVN, true),
        (Some(_), None) => ("pbn", PBN, false),
        (None, None) => {
            r.bad(Some(pna), path, "pbn (or pvn) is missing".into());
            return None;
        }
    };
    let net = r.object(pna.get(kind), &format!("{path}.{kind}"))?;
    r.unknown(net, &format!("{path}.{kind}"), fields);
    let n_node = net.get(fields[0]);
    let npath = format!("{path}.{kind}.{}", fields[0]);
    let prefix = match r.string(n_node, &npath) {
        Some(n) => match parse_network(n) {
            Some((net, _)) if net.is_ipv4() != addr.is_ipv4() => {
                r.bad(n_node, &npath, "not of the address's family".into());
                return None;
            }
            Some((_, len)) => len,
            None => {
                r.bad(n_node, &npath, format!("{n:?} is not ADDR/LEN"));
                return None;
            }
        },
        None => {
            if n_node.is_none() {
                r.bad(
                    Some(net),
                    &format!("{path}.{kind}"),
                    format!("{} is missing", fields[0]),
                );
            }
            return None;
        }
    };
    let g_node = net.get(fields[1]);
    let gpath = format!("{path}.{kind}.{}", fields[1]);
    let gateway = match r.string(g_node, &gpath) {
        None => None,
        Some(g) => match g.parse::<IpAddr>() {
            Ok(gw) if gw.is_ipv4() == addr.is_ipv4() => Some(gw),
            Ok(_) => {
                r.bad(g_node, &gpath, "not of the address's family".into());
                return None;
            }
            Err(_) => {
                r.bad(g_node, &gpath, format!("{g:?} is not an IP address"));
                return None;
            }
        },
    };
    Some(Addr {
        addr,
        prefix,
        gateway,
        private,
    })
}
