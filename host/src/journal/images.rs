//! The journal's image claims (schema 16, `stack_images`): which digest
//! of an image a stack's deploys were for, so that the same digest arriving
//! again deploys nothing ([`ImageClaim`]); checked and recorded inside the
//! admission's transaction (`super::admission`).

use super::admission::{delivery_seen, newest_same_push_of, same_push};
use super::sql::{args, DbError, Sql};
use super::NewDeploy;

/// The image digest a deploy is for: the same digest arriving again is
/// the same push seen again, and deploys nothing
/// ([`Admitted::SameCommit`]); a different digest deploys, and becomes the
/// image's claim (schema 16, `stack_images`). Of three kinds
/// ([`ImageClaimKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageClaim {
    /// The image as polling names it, `registry/name:tag`; for a push by
    /// digest alone, `path@digest` ([`ImageClaim::repository`]); for a push
    /// of a tag, as the deploy event names it, `registry/repository:tag`.
    pub image: String,
    /// The image, whatever its registry, tag or digest: its repository
    /// path as the component reads a pushed image
    /// (`crate::dispatch::image::image_of`, `acme/app`, `library/nginx`):
    /// where the image last moved is kept under it
    /// ([`ImageClaim::latest_name`]), and a digest pushed by digest alone
    /// under it and the digest, whichever way the push came (a tag's
    /// webhook, a poll, a push by digest alone) and however its sender
    /// spelled it.
    pub repository: String,
    /// The manifest digest (`sha256:...`) the deploy is for; empty for
    /// [`ImageClaimKind::Tag`].
    pub digest: String,
    /// When the digest was seen (ms since the epoch): for a polled image,
    /// one seen before the image's claim was is covered by the claimed
    /// deploy, which pulls the tag later (a poll admitted after a webhook
    /// that saw a newer digest). A claim seen before the image's claim
    /// never replaces it.
    pub seen_at_ms: i64,
    /// Which kind of claim this is.
    pub kind: ImageClaimKind,
}

/// The kinds of [`ImageClaim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageClaimKind {
    /// A stack that both polls the image (`[stacks.poll]`) and receives its
    /// registry's webhook claims the digest the poll saw or the registry
    /// said its tag points to: the same digest arriving again for services
    /// and a profile the claimed deploy covers is the same push seen the
    /// other way.
    Polled,
    /// An image pushed by digest alone, whose deploy runs exactly that
    /// digest, claims the digest its payload names: sent again (under
    /// another delivery id, by a second webhook, replayed) it deploys
    /// nothing for the services and profile of its last deploy, nor, once
    /// the image moved on (a later digest, a tag: [`ImageClaim::latest_name`]),
    /// for any query (a rollback by delivery). Its row is kept when the
    /// deploy is pruned.
    Pinned,
    /// A push of a tag of the image, whose deploy pulls the tag: it claims
    /// nothing and always deploys, but moves the image on, so that no digest
    /// pushed by digest alone before it comes back by a delivery.
    Tag,
}

impl ImageClaim {
    /// The `stack_images.image` of where the image last moved to:
    /// `path@` ([`ImageClaim::repository`]), which no claimed image's own
    /// name is.
    pub fn latest_name(&self) -> String {
        format!("{}@", self.repository)
    }
}

/// The deploy `d`, claiming `image`, repeats, if any (by its kind's rule).
pub(super) fn repeated(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    image: &ImageClaim,
) -> Result<Option<i64>, DbError> {
    match image.kind {
        ImageClaimKind::Pinned => pinned_image_deployed(sql, d, image),
        ImageClaimKind::Polled => polled_image_deployed(sql, d, image),
        ImageClaimKind::Tag => Ok(None),
    }
}

/// The deploy a polled image's claim says `d` repeats: the image's claimed
/// digest, or one seen after this one (the claimed deploy pulls the tag
/// later, at that digest or a newer one), by a deploy that was `d`'s push
/// ([`same_push`]). A delivery seen before is answered as that instead.
fn polled_image_deployed(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    image: &ImageClaim,
) -> Result<Option<i64>, DbError> {
    let Some(row) = sql.query_opt(
        "SELECT deploy_id, digest, seen_at_ms FROM stack_images
         WHERE stack = ?1 AND image = ?2",
        args![d.stack, image.image],
    )?
    else {
        return Ok(None);
    };
    let deploy_id: i64 = row.get(0)?;
    let digest: String = row.get(1)?;
    let seen_at_ms: i64 = row.get(2)?;
    let covered = digest == image.digest || seen_at_ms > image.seen_at_ms;
    Ok((covered && !delivery_seen(sql, d)? && same_push(sql, deploy_id, d)?).then_some(deploy_id))
}

/// The deploy a push by digest alone ([`ImageClaimKind::Pinned`])
/// repeats. The digest's first deploy, when the image moved on since to a
/// later digest or a tag, whatever `d`'s query (a delivery never rolls the
/// stack back). While the image is still at that digest: any deploy of
/// the digest since the image moved to it that was `d`'s push (same ref
/// and profile, its services covered, not refused: each query deploys the
/// digest once), or the digest's first deploy when it has been pruned. A
/// delivery seen before is answered as that instead.
fn pinned_image_deployed(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    image: &ImageClaim,
) -> Result<Option<i64>, DbError> {
    let latest_name = image.latest_name();
    let rows = sql.query(
        "SELECT image, digest, deploy_id FROM stack_images
         WHERE stack = ?1 AND image IN (?2, ?3)",
        args![d.stack, image.image, latest_name],
    )?;
    let (mut this, mut latest) = (None, None);
    for row in &rows {
        match row.get::<String>(0)? == latest_name {
            true => latest = Some((row.get::<String>(1)?, row.get::<i64>(2)?)),
            false => this = Some(row.get::<i64>(2)?),
        }
    }
    let Some(deploy_id) = this else {
        return Ok(None);
    };
    if delivery_seen(sql, d)? {
        return Ok(None);
    }
    let since = match latest {
        Some((digest, _)) if digest != image.digest => return Ok(Some(deploy_id)),
        Some((_, moved)) => moved,
        None => deploy_id,
    };
    if let Some(covering) = same_push_since(sql, since, d, &image.digest)? {
        return Ok(Some(covering));
    }
    Ok((!deploy_kept(sql, deploy_id)?).then_some(deploy_id))
}

/// The newest deploy of `d`'s stack from deploy `since` on that was `d`'s
/// push, not refused, and ran `digest` (its event's image pinned to it, the
/// command's `REDEPLOY_IMAGE`): a deploy of another digest, or of none (a
/// manual trigger, a tag), never ran it ([`newest_same_push_of`];
/// retention bounds the deploys read).
fn same_push_since(
    sql: &mut dyn Sql,
    since: i64,
    d: &NewDeploy,
    digest: &str,
) -> Result<Option<i64>, DbError> {
    newest_same_push_of(sql, d, "id >= ?4", &since, Some(digest))
}

/// Records `image` as claimed by deploy `id` of `d`: a push by digest
/// alone's digest and, as where the image moved to, beside it (each by its
/// first deploy); a deploy that pulls a tag (a tag's push, a polled image)
/// as where the image moved to (an empty digest, which no digest is), and
/// a polled image's claim unless one seen later holds it.
pub(super) fn record(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    image: &ImageClaim,
    id: i64,
) -> Result<(), DbError> {
    if image.kind != ImageClaimKind::Pinned {
        // The deploy pulls a tag: the image moves on, to no digest.
        sql.execute_pipelined(
            "INSERT INTO stack_images (stack, image, digest, deploy_id, seen_at_ms)
             VALUES (?1, ?2, '', ?3, ?4)
             ON CONFLICT (stack, image) DO UPDATE SET
                 digest     = excluded.digest,
                 deploy_id  = excluded.deploy_id,
                 seen_at_ms = excluded.seen_at_ms",
            args![d.stack, image.latest_name(), id, image.seen_at_ms],
        )?;
    }
    if image.kind == ImageClaimKind::Tag {
        return Ok(());
    }
    if image.kind == ImageClaimKind::Polled {
        return sql.execute_pipelined(
            "INSERT INTO stack_images (stack, image, digest, deploy_id, seen_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (stack, image) DO UPDATE SET
                 digest     = excluded.digest,
                 deploy_id  = excluded.deploy_id,
                 seen_at_ms = excluded.seen_at_ms
             WHERE excluded.seen_at_ms >= stack_images.seen_at_ms",
            args![d.stack, image.image, image.digest, id, image.seen_at_ms],
        );
    }
    // Each row keeps the first deploy that brought the image to the digest:
    // the digest's own, and where the image moved to (replaced only when
    // it moves again).
    sql.execute_pipelined(
        "INSERT INTO stack_images (stack, image, digest, deploy_id, seen_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5), (?1, ?6, ?3, ?4, ?5)
         ON CONFLICT (stack, image) DO UPDATE SET
             digest     = excluded.digest,
             deploy_id  = excluded.deploy_id,
             seen_at_ms = excluded.seen_at_ms
         WHERE stack_images.digest <> excluded.digest",
        args![
            d.stack,
            image.image,
            image.digest,
            id,
            image.seen_at_ms,
            image.latest_name()
        ],
    )
}

/// Whether deploy `id` is still in the journal (retention prunes deploys).
fn deploy_kept(sql: &mut dyn Sql, id: i64) -> Result<bool, DbError> {
    Ok(sql
        .query_opt("SELECT 1 FROM deploys WHERE id = ?1", args![id])?
        .is_some())
}
