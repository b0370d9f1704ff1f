//! The archive taken from the platform's disk: its entries created beneath
//! a staging folder, swapped with `/gandi`, and the config read from it.

use super::*;

/// Reads the archive from the first of `places` that holds one and puts its
/// `gandi/` tree in place of `gandi` (refused whole when hostile). Also
/// returns where an archive was read to its end (whole or refused), to be
/// cleared before the swap area is enabled.
pub(super) fn extract_config(
    tree: &Tree,
    gandi: &Path,
    places: &[PathBuf],
) -> Result<(Done, Option<PathBuf>)> {
    let Some((place, file)) = find_archive(places)? else {
        let shown: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        return Ok((
            Done::skipped(format!("no archive at 512 KiB of {}", shown.join(" or "))),
            None,
        ));
    };
    let (parent_rel, name) = match (gandi.parent(), gandi.file_name().and_then(|n| n.to_str())) {
        (Some(p), Some(n)) => (p, n),
        _ => bail!("GANDI_DIR {} cannot be replaced", gandi.display()),
    };
    tree.create_dirs(parent_rel, 0o755)?;
    let parent = tree.subtree(parent_rel)?;
    let limits = Limits::default();
    let n = match archive::extract_to(
        file.take(limits.max_bytes * 2),
        Path::new("gandi"),
        &parent,
        name,
        limits,
    ) {
        Ok(n) => n,
        // Refused whole: read to its end all the same (not to be read
        // again), unless the disk failed.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.raw_os_error().is_some())
            }) =>
        {
            return Err(e.context(format!("reading the archive on {}", place.display())));
        }
        Err(e) => {
            return Ok((
                Done::failed(format!(
                    "refusing the archive on {}: {e:#}",
                    place.display()
                )),
                Some(place),
            ));
        }
    };
    if n == 0 {
        return Ok((
            Done::skipped(format!(
                "the archive on {} has no gandi entry",
                place.display()
            )),
            Some(place),
        ));
    }
    parent.set_mode(name, 0o700)?;
    Ok((
        Done::changed(format!("{n} entries from {}", place.display())),
        Some(place),
    ))
}
