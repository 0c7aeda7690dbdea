-- luacheck configuration: `luacheck lua spec examples` is clean.
std = "max"
max_line_length = 100
-- NaN checks (x ~= x) and `not (x >= 0)` are deliberate
ignore = { "581" }
files["spec"] = { std = "max+busted" }
