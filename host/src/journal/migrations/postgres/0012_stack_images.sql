-- Schema version 12 (PostgreSQL): the image digest each stack last accepted a deploy
-- of, per image, so that a stack that both polls an image and receives its
-- registry's webhook deploys one digest once (`ImageClaim`).
-- One row per (stack, image): `image` names the image as polling does
-- (`registry/name:tag`), `digest` is the manifest digest the deploy was
-- for (the poll's, or what the registry answered when the webhook came),
-- `deploy_id` that deploy, `seen_at_ms` when the digest was seen (an
-- earlier sighting admitted later never replaces a newer one). No foreign key: like `stack_commits`, the rows
-- outlive pruned deploys.
CREATE TABLE stack_images (
    stack       TEXT NOT NULL,
    image       TEXT NOT NULL,
    digest      TEXT NOT NULL,
    deploy_id   BIGINT NOT NULL,
    seen_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (stack, image)
);
