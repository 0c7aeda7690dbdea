-- The README's example is part of the documentation users copy first: it must run as shown.
describe("README example", function()
  it("runs and prints the echoed reply", function()
    local f = assert(io.open("README.md"))
    local text = f:read("a")
    f:close()
    local code = assert(text:match("```lua\n(.-)```"), "no Lua example in README.md")
    local printed = {}
    local env = setmetatable({
      print = function(...)
        local t = {}
        for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
        printed[#printed + 1] = table.concat(t, "\t")
      end,
    }, { __index = _G })
    local chunk = assert((loadstring or load)(code, "README example", "t", env))
    if setfenv then setfenv(chunk, env) end -- luacheck: ignore 113
    chunk()
    assert.matches("^connected to %x+$", printed[1])
    assert.equals("true\techo: hello", printed[2])
  end)
end)
