//! What the platform's own script may undo: the files and our blocks the
//! native apply wrote, read before the script runs and put back after it.

use super::*;

/// What the native apply (and the admin since) has in the files the
/// platform's own script rewrites whole: our files as they are, our blocks
/// of the admin's files. Taken before the script runs.
pub struct NativeState {
    files: Vec<(&'static str, Option<Vec<u8>>)>,
    blocks: Vec<(
        &'static str,
        &'static crate::base::block::Markers,
        Vec<String>,
    )>,
}

/// Our files that the script may rewrite.
pub(super) const NATIVE_FILES: [&str; 4] = [
    "/etc/hostname",
    "/etc/mailname",
    "/etc/systemd/resolved.conf.d/gandi.conf",
    "/etc/NetworkManager/conf.d/50-gandi-dns.conf",
];

/// Our blocks in the admin's files that the script may rewrite.
pub(super) const NATIVE_BLOCKS: [(&str, &crate::base::block::Markers); 3] = [
    ("/etc/hosts", &crate::base::block::HOSTS),
    ("/etc/resolv.conf", &crate::base::block::RESOLVERS),
    (
        "/etc/resolvconf/resolv.conf.d/head",
        &crate::base::block::RESOLVERS,
    ),
];

/// Takes the [`NativeState`] of `tree`.
pub fn native_state(tree: &Tree) -> NativeState {
    NativeState {
        files: NATIVE_FILES
            .iter()
            .map(|f| (*f, tree.read_owned_limited(f, 1 << 20).ok().map(|(d, _)| d)))
            .collect(),
        blocks: NATIVE_BLOCKS
            .iter()
            .filter_map(|(f, m)| {
                let text = tree.read_string(f).ok()?;
                let lines = crate::base::block::ours(&text, m).ok()?;
                (!lines.is_empty()).then_some((*f, *m, lines))
            })
            .collect(),
    }
}

/// After the platform's own script ran (`CONFIG_PLATFORM_SCRIPT=1`): our
/// files and blocks are put back as they were before it (what the native
/// apply set, and what the admin changed since), where it rewrote them;
/// the rest of its changes stay.
pub fn restore_native(tree: &Tree, before: &NativeState) -> Result<Done> {
    let mut restored = Vec::new();
    for (file, old) in &before.files {
        let Some(old) = old else {
            continue;
        };
        if tree
            .read_owned_limited(file, 1 << 20)
            .ok()
            .map(|(d, _)| d)
            .as_ref()
            != Some(old)
            && tree.write_if_changed(file, old, crate::base::tree::WriteOpts::keep(0o644))?
                == Change::Changed
        {
            restored.push(file.to_string());
        }
    }
    for (file, m, lines) in &before.blocks {
        let place = if *file == "/etc/hosts" {
            crate::base::block::Place::After(|l| l.starts_with("127.0.0.1"))
        } else {
            crate::base::block::Place::Top
        };
        if apply::edit_block(tree, file, m, lines, place)? == Change::Changed {
            restored.push(format!("our block of {file}"));
        }
    }
    Ok(if restored.is_empty() {
        Done::unchanged("the native apply stands")
    } else {
        Done::changed(format!(
            "put back after the script: {}",
            restored.join(", ")
        ))
    })
}
