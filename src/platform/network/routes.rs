//! Two public NICs that both answer: each interface but the first with a
//! static address and a gateway gets a routing table of its own (its
//! default route there) and, for each such address, two source rules:
//!
//! - `from ADDR lookup main suppress_prefixlength 0` at priority
//!   30000 + 2N: the main table's routes, but its default ones, still
//!   come first (the subnets, the admin's own routes);
//! - `from ADDR lookup 30000+N` at 30001 + 2N: else the interface's own
//!   default route, so a reply leaves through the gateway of the address it
//!   comes from and no upstream anti-spoofing filter drops it.
//!
//! N is the interface's index (its vif number, 1 to 99; vif 0 has none):
//! priorities 30002 to 30199, tables 30001 to 30099. An admin's rule added without a
//! priority gets one below the lowest rule there is (the kernel's choice),
//! so before ours; main (32766) comes after. `CONFIG_SOURCE_ROUTING=0`
//! turns them off. DHCP leases get no table (their address is not known
//! when the file is written): their routes keep the interface's metric.

use super::Iface;

/// The first priority of our rules.
pub const RULE_BASE: u32 = 30000;
/// The first of our routing tables.
pub const TABLE_BASE: u32 = 30000;
/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// One address's pair of rules and the table's default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRule {
    pub v6: bool,
    /// The address alone (no prefix length).
    pub from: String,
    /// Its gateway: the table's default route.
    pub gateway: String,
    pub table: u32,
    /// `lookup main suppress_prefixlength 0`.
    pub main_priority: u32,
    /// `lookup TABLE`.
    pub table_priority: u32,
}

/// The table of interface `index`.
pub fn table_of(index: u32) -> u32 {
    TABLE_BASE + index
}

/// The source rules of `iface`: one per static address of a family whose
/// gateway it has, when it has its own table. The gateway of a family is
/// the first one its addresses give.
pub fn rules_of(iface: &Iface) -> Vec<SourceRule> {
    if !iface.source_routes {
        return Vec::new();
    }
    let table = table_of(iface.index);
    let mut out = Vec::new();
    for (v6, list) in [(false, &iface.v4), (true, &iface.v6)] {
        let Some(gateway) = list.iter().find_map(|(_, g)| g.clone()) else {
            continue;
        };
        for (addr, _) in list {
            let from = addr.split('/').next().unwrap_or(addr).to_string();
            out.push(SourceRule {
                v6,
                from,
                gateway: gateway.clone(),
                table,
                main_priority: RULE_BASE + 2 * iface.index,
                table_priority: RULE_BASE + 2 * iface.index + 1,
            });
        }
    }
    out
}

/// Whether a rule (as `ip -j rule` shows it) is one of ours: a
/// full-length source, at a priority of vif 1 to 99 (30002 to 30199; vif 0
/// has none, so an admin's rule the kernel placed just below ours is never
/// taken), and our shape there: `lookup main suppress_prefixlength 0` at
/// the even one, `lookup 30000+N` at the odd one.
pub fn ours(priority: u32, full_length: bool, table: &str, suppress: Option<u64>) -> bool {
    if !full_length || !(RULE_BASE + 2..RULE_BASE + 200).contains(&priority) {
        return false;
    }
    let n = (priority - RULE_BASE) / 2;
    if priority.is_multiple_of(2) {
        table == "main" && suppress == Some(0)
    } else {
        table == table_of(n).to_string() && suppress.is_none()
    }
}

impl SourceRule {
    fn family(&self) -> &'static str {
        if self.v6 { "-6" } else { "-4" }
    }

    /// The two rules, as `ip rule` takes them after `add` or `del`.
    fn rule_args(&self) -> [Vec<String>; 2] {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let main = self.main_priority.to_string();
        let own = self.table_priority.to_string();
        let table = self.table.to_string();
        [
            s(&[
                "from",
                &self.from,
                "lookup",
                "main",
                "suppress_prefixlength",
                "0",
                "priority",
                &main,
            ]),
            s(&["from", &self.from, "lookup", &table, "priority", &own]),
        ]
    }

    fn rule_cmd(&self, verb: &str, args: &[String]) -> Vec<String> {
        let mut v = vec![self.family().to_string(), "rule".into(), verb.into()];
        v.extend(args.iter().cloned());
        v
    }

    /// The `ip` commands that set this address up, each a list of
    /// arguments (the ifupdown stanza's `post-up` lines and our own path):
    /// the table's route replaced, each rule deleted (its failure when
    /// absent ignored) then added, so a second `up` adds no duplicate.
    pub fn ip_up(&self, dev: &str) -> Vec<Vec<String>> {
        let table = self.table.to_string();
        let mut out = vec![
            [
                self.family(),
                "route",
                "replace",
                "default",
                "via",
                &self.gateway,
                "dev",
                dev,
                "table",
                &table,
            ]
            .iter()
            .map(|x| x.to_string())
            .collect(),
        ];
        for r in self.rule_args() {
            out.push(self.rule_cmd("del", &r));
            out.push(self.rule_cmd("add", &r));
        }
        out
    }

    /// The `ip` commands that remove the two rules (the table's route goes
    /// with its interface).
    pub fn ip_down(&self) -> Vec<Vec<String>> {
        self.rule_args()
            .iter()
            .map(|r| self.rule_cmd("del", r))
            .collect()
    }
}
