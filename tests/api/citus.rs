//! Citus-ready, checked by the catalog. Every table with a `tenant_id` column is one Citus would
//! distribute by `tenant_id`, so that a tenant's rows sit on one node and each key is enforced
//! there: tenant_id is NOT NULL, part of the primary key and of every unique constraint, unique
//! index and exclusion constraint, and a foreign key between two such tables joins tenant_id to
//! tenant_id. The few tables that keep a tenant_id but are global are declared in `GLOBAL`, as
//! `create_reference_table` or a coordinator-local table would declare them. (`tenants` itself
//! has no tenant_id: it is the reference table the others' `tenant_id` foreign keys point to.)

use serde_json::json;

use crate::api::helpers::{collection, spawn_app};

/// Where Citus would keep a global table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Placement {
    /// Replicated to every node (`create_reference_table`).
    Reference,
    /// On the coordinator only.
    Local,
}

use Placement::{Local, Reference};

/// The tables of `public` that have a tenant_id but are not distributed by it, with the reason.
/// Every other table with a tenant_id must follow the rules; an entry whose table is gone (or
/// has lost its tenant_id) fails the test, so this list cannot outlive what it excuses.
const GLOBAL: &[(&str, Placement, &str)] = &[
    (
        "admin_audit_log",
        Local,
        "server-wide admin audit: outlives the tenant it names, tenant_id NULL for server events",
    ),
    (
        "api_keys",
        Reference,
        "looked up by secret_hash before the tenant is known; secret_hash and prefix unique across tenants",
    ),
    (
        "jobs",
        Local,
        "one queue claimed across tenants with FOR UPDATE SKIP LOCKED; server-wide sweeps have no tenant",
    ),
];

/// What the catalog says about the tables with a tenant_id.
struct Report {
    /// The tables Citus would distribute by tenant_id (schema-qualified outside `public`).
    distributed: Vec<String>,
    /// One line per broken rule, sorted.
    offences: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Distributed,
    Global(Placement),
}

/// Reads pg_catalog and checks every table with a tenant_id in every schema that is not the
/// system's, `global` naming the tables of `public` exempt from the rules.
async fn check_catalog(client: &tokio_postgres::Client, global: &[(&str, Placement, &str)]) -> Report {
    let tables = client
        .query(
            "SELECT c.oid, c.oid::regclass::text, n.nspname = 'public', c.relname::text, \
                    a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_constraint nn WHERE nn.conrelid = c.oid \
                        AND nn.contype = 'n' AND nn.conkey = ARRAY[a.attnum] AND NOT nn.convalidated) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 2",
            &[],
        )
        .await
        .expect("reading the tables with a tenant_id");
    let mut offences = Vec::new();
    let mut class = std::collections::HashMap::new();
    let mut names = std::collections::HashMap::new();
    let mut distributed = Vec::new();
    for row in &tables {
        let (oid, name, in_public, relname, not_null): (u32, String, bool, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let placement = global.iter().find(|g| in_public && g.0 == relname).map(|g| g.1);
        class.insert(oid, placement.map_or(Class::Distributed, Class::Global));
        names.insert(oid, name.clone());
        if placement.is_none() {
            if !not_null {
                offences.push(format!("{name}: tenant_id is nullable"));
            }
            distributed.push(name);
        }
    }
    for (table, _, _) in global {
        if !tables
            .iter()
            .any(|r| r.get::<_, bool>(2) && r.get::<_, String>(3) == *table)
        {
            offences.push(format!(
                "GLOBAL lists {table}, which is no longer a table of public with a tenant_id: remove the entry"
            ));
        }
    }
    let distributed_oids: Vec<u32> = class
        .iter()
        .filter(|(_, c)| **c == Class::Distributed)
        .map(|(oid, _)| *oid)
        .collect();

    // Primary keys, unique constraints, unique indexes and exclusion constraints, by their
    // key columns (INCLUDE columns do not count; an expression is not tenant_id).
    let keys = client
        .query(
            "SELECT i.indrelid, ic.relname::text, i.indisprimary, \
                    CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint' \
                                     WHEN 'x' THEN 'exclusion constraint' ELSE 'unique index' END, \
                    ARRAY(SELECT coalesce(a.attname::text, '(expression)') \
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) \
             FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid \
                                          AND con.contype IN ('p', 'u', 'x') \
             WHERE i.indrelid = ANY($1) AND (i.indisunique OR con.contype = 'x')",
            &[&distributed_oids],
        )
        .await
        .expect("reading the unique keys");
    for oid in &distributed_oids {
        if !keys.iter().any(|k| k.get::<_, u32>(0) == *oid && k.get::<_, bool>(2)) {
            offences.push(format!("{}: no primary key", names[oid]));
        }
    }
    for key in &keys {
        let (oid, index, kind, columns): (u32, String, String, Vec<String>) =
            (key.get(0), key.get(1), key.get(3), key.get(4));
        if !columns.iter().any(|c| c == "tenant_id") {
            offences.push(format!(
                "{}: {kind} {index} ({}) leaves out tenant_id",
                names[&oid],
                columns.join(", ")
            ));
        }
    }

    // Foreign keys with a table that has a tenant_id on either side.
    let oids: Vec<u32> = class.keys().copied().collect();
    let foreign_keys = client
        .query(
            "SELECT k.conname::text, k.conrelid, k.confrelid, k.conrelid::regclass::text, k.confrelid::regclass::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS c(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.attnum ORDER BY c.ord), \
                    ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS c(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = c.attnum ORDER BY c.ord) \
             FROM pg_constraint k WHERE k.contype = 'f' AND (k.conrelid = ANY($1) OR k.confrelid = ANY($1))",
            &[&oids],
        )
        .await
        .expect("reading the foreign keys");
    for fk in &foreign_keys {
        let (name, from, to, from_name, to_name): (String, u32, u32, String, String) =
            (fk.get(0), fk.get(1), fk.get(2), fk.get(3), fk.get(4));
        let (columns, referenced): (Vec<String>, Vec<String>) = (fk.get(5), fk.get(6));
        let joins_tenant = columns
            .iter()
            .zip(&referenced)
            .any(|(c, r)| c == "tenant_id" && r == "tenant_id");
        match (class.get(&from), class.get(&to)) {
            (Some(Class::Distributed), Some(Class::Distributed)) if !joins_tenant => offences.push(format!(
                "{from_name}: foreign key {name} ({}) -> {to_name} ({}) does not join tenant_id to tenant_id",
                columns.join(", "),
                referenced.join(", ")
            )),
            // Citus enforces a foreign key only within a node: a global table cannot point
            // into distributed shards, and a shard can point only at a table on every node.
            (Some(Class::Global(_)) | None, Some(Class::Distributed)) => offences.push(format!(
                "{from_name}: foreign key {name} -> {to_name}: a global table cannot reference a distributed one"
            )),
            (Some(Class::Distributed), Some(Class::Global(Local))) => offences.push(format!(
                "{from_name}: foreign key {name} -> {to_name}: a distributed table can reference a reference table, not a local one"
            )),
            _ => {}
        }
    }
    offences.sort();
    Report { distributed, offences }
}

#[tokio::test]
async fn every_tenant_table_is_citus_ready_or_declared_global() {
    let app = spawn_app().await;
    // A collection, so that the tables created per collection (in the tenant's schema) are
    // checked too.
    collection(&app, json!({"name": "kb", "embedding": {"dimension": 3}})).await;
    let client = app.pool.get().await.unwrap();

    let report = check_catalog(&client, GLOBAL).await;

    assert!(
        report.offences.is_empty(),
        "not distributable by tenant_id:\n  {}",
        report.offences.join("\n  ")
    );
    for table in ["audit_log", "users", "collections", "runs", "messages", "memories"] {
        assert!(
            report.distributed.iter().any(|t| t == table),
            "{table} checked: {:?}",
            report.distributed
        );
    }
    assert!(
        report
            .distributed
            .iter()
            .any(|t| t.starts_with("tenant_") && t.contains(".chunks_")),
        "a collection's tables checked: {:?}",
        report.distributed
    );
}

/// The check itself: each rule fires on a table that breaks it, and a stale GLOBAL entry is
/// reported.
#[tokio::test]
async fn the_catalog_check_reports_each_broken_rule() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA probe;
             CREATE TABLE probe.parent (tenant_id uuid NOT NULL, id uuid NOT NULL, code text, PRIMARY KEY (tenant_id, id));
             CREATE UNIQUE INDEX parent_id_key ON probe.parent (id);
             CREATE TABLE probe.keyed_by_id (tenant_id uuid NOT NULL, id uuid PRIMARY KEY, code text UNIQUE);
             CREATE TABLE probe.nullable (tenant_id uuid, id uuid);
             CREATE TABLE probe.child (
                 tenant_id uuid NOT NULL, id uuid NOT NULL, parent_id uuid, PRIMARY KEY (tenant_id, id),
                 CONSTRAINT by_id FOREIGN KEY (parent_id) REFERENCES probe.parent (id),
                 CONSTRAINT crossed FOREIGN KEY (tenant_id, parent_id) REFERENCES probe.parent (id, tenant_id),
                 CONSTRAINT to_jobs FOREIGN KEY (parent_id) REFERENCES public.jobs (id));
             ALTER TABLE public.jobs ADD CONSTRAINT jobs_to_parent FOREIGN KEY (tenant_id, collection_id)
                 REFERENCES probe.parent (tenant_id, id);",
        )
        .await
        .unwrap();
    let mut global = GLOBAL.to_vec();
    global.push(("gone", Local, "a table since dropped"));

    let report = check_catalog(&client, &global).await;

    let probed: Vec<&str> = report
        .offences
        .iter()
        .map(String::as_str)
        .filter(|o| o.contains("probe") || o.starts_with("GLOBAL"))
        .collect();
    assert_eq!(
        probed,
        [
            "GLOBAL lists gone, which is no longer a table of public with a tenant_id: remove the entry",
            "jobs: foreign key jobs_to_parent -> probe.parent: a global table cannot reference a distributed one",
            "probe.child: foreign key by_id (parent_id) -> probe.parent (id) does not join tenant_id to tenant_id",
            "probe.child: foreign key crossed (tenant_id, parent_id) -> probe.parent (id, tenant_id) does not join tenant_id to tenant_id",
            "probe.child: foreign key to_jobs -> jobs: a distributed table can reference a reference table, not a local one",
            "probe.keyed_by_id: primary key keyed_by_id_pkey (id) leaves out tenant_id",
            "probe.keyed_by_id: unique constraint keyed_by_id_code_key (code) leaves out tenant_id",
            "probe.nullable: no primary key",
            "probe.nullable: tenant_id is nullable",
            "probe.parent: unique index parent_id_key (id) leaves out tenant_id",
        ]
    );
}
