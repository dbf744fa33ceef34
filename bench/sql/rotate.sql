\set n random(1, :nrot)
SELECT id AS eid FROM bench.rot_pick WHERE n = :n \gset
SELECT * FROM api_auth.rotate_api_key(:eid);
