\\set u random(1, 1000000000)
INSERT INTO bench_units (unit, v) VALUES (:u, 1) /*unit='u:u'*/;
