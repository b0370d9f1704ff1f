use super::*;

#[test]
fn the_platforms_three_resolvers_picked_the_same_per_machine() {
    let all: Vec<IpAddr> = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
        "2001:db8::4",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let a = choose_resolvers(&all, false, "machine-a");
    assert_eq!(a.len(), 3);
    assert_eq!(a.iter().filter(|x| x.is_ipv4()).count(), 2);
    assert!(a[0].is_ipv4() && a[1].is_ipv4() && a[2].is_ipv6());
    assert_eq!(a, choose_resolvers(&all, false, "machine-a"), "not stable");
    let picks: HashSet<Vec<IpAddr>> = (0..20)
        .map(|i| choose_resolvers(&all, false, &format!("m{i}")))
        .collect();
    assert!(picks.len() > 1, "every machine picks the same");
    let v6 = choose_resolvers(&all, true, "machine-a");
    assert_eq!(v6.len(), 3);
    assert!(v6.iter().all(IpAddr::is_ipv6));
    // Fewer given: what there is.
    let few: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap()];
    assert_eq!(choose_resolvers(&few, false, "x"), few);
    assert!(choose_resolvers(&few, true, "x").is_empty());
}

#[test]
fn hosts_block_after_localhost_and_legacy_line_replaced() {
    let old = "127.0.0.1\tlocalhost\n127.0.1.1\told old # gandi-vm\n10.1.1.1\tbackup\n";
    let new = hosts_text(old, "web1.example.net", None).unwrap();
    assert_eq!(
        new,
        format!(
            "127.0.0.1\tlocalhost\n{}\n127.0.1.1\tweb1.example.net web1\n{}\n10.1.1.1\tbackup\n",
            block::HOSTS.begin,
            block::HOSTS.end
        )
    );
    assert_eq!(hosts_text(&new, "web1.example.net", None).unwrap(), new);
    let at = hosts_text(old, "web1.example.net", Some("192.0.2.10".parse().unwrap())).unwrap();
    assert!(at.contains("\n192.0.2.10\tweb1.example.net web1\n"), "{at}");
}
