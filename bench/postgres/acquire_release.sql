-- SPDX-License-Identifier: MIT
-- pgbench: one granted acquire + release per transaction, exactly the statements lockkit sends
-- (tests/postgres checks they match). Run with -M prepared; each client uses its own key.
\set key :client_id
\set token random(1, 9223372036854775807)
\set ttl 30000
WITH live AS (SELECT 1 FROM "lockkit".leases WHERE key = :key::bytea AND expires_at > clock_timestamp()), ins AS (INSERT INTO "lockkit".leases AS l (key, token, fence, expires_at) SELECT :key::bytea, :token::text, (SELECT nextval('"lockkit".fences') FROM (SELECT pg_advisory_xact_lock(1819239276, hashtext(md5(:key::bytea)))) AS k), clock_timestamp() + :ttl::bigint * interval '1 millisecond' WHERE NOT EXISTS (SELECT 1 FROM live) ON CONFLICT (key) DO UPDATE SET token = excluded.token, fence = excluded.fence, expires_at = excluded.expires_at WHERE l.expires_at <= clock_timestamp() RETURNING l.fence), reclaim AS (DELETE FROM "lockkit".leases d WHERE EXISTS (SELECT 1 FROM ins) AND d.key = ANY (ARRAY(SELECT e.key FROM "lockkit".leases e WHERE EXISTS (SELECT 1 FROM ins) AND e.expires_at < now() AND e.key <> :key::bytea ORDER BY e.expires_at LIMIT 8 FOR UPDATE SKIP LOCKED))) SELECT fence FROM ins;
DELETE FROM "lockkit".leases WHERE key = :key::bytea AND token = :token::text RETURNING expires_at > clock_timestamp();
