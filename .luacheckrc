-- luacheck settings: Lua 5.4 everywhere; busted's globals in the specs.
std = "lua54"
max_line_length = 120
files["spec"] = { std = "+busted" }
-- a JSON fixture line as upstream sends it
files["spec/job_spec.lua"] = { std = "+busted", max_line_length = false }
