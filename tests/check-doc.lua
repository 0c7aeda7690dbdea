-- Checks that the ldoc reference (make doc) documents every function, field, option and event
-- that the API tables name.
--
--   lua5.4 tests/check-doc.lua DOC_DIR API.md [API.md ...]
--
-- It reads the markdown tables of each API file. A code span in a table's first column such as
-- `node:connect(target [, opts])`, `peer.rtt`, `ident.id`, `t:await([timeout])` or
-- `p2pnet.sleep(seconds)` names a method or field of an object; the reference must have an
-- item for it: `Node:connect`, `Peer.rtt`, `Identity.id`, `Transfer:await`, `sleep`. In an
-- `| option |` table, each option must be a parameter of the function the heading above it
-- names (`### node:metrics([opts])`), a field of NodeOptions (under "## Nodes"), or a
-- parameter of `sim` (under "## Simulator").
-- In an `| event |` table each event must be an item. And every `opts.X` in the row of a
-- function must be a parameter of that function's item. Prints what is missing and exits 1
-- when anything is, else prints the count and exits 0.
local doc_dir = assert(arg[1], "usage: check-doc.lua DOC_DIR API.md [API.md ...]")
assert(arg[2], "usage: check-doc.lua DOC_DIR API.md [API.md ...]")

-- The receivers the API tables use, and the ldoc class each stands for ("" is the module).
local CLASS = { p2pnet = "", node = "Node", peer = "Peer", ident = "Identity", sim = "Sim",
                t = "Transfer" }

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Every item of the module p2pnet's page: anchor name -> the HTML from its anchor to the next
-- one. The page is index.html when p2pnet is the only module, else modules/p2pnet.html (other
-- modules, such as p2pnet.luv, have pages of their own).
local items = {}
local page = doc_dir .. "/modules/p2pnet.html"
if not io.open(page) then page = doc_dir .. "/index.html" end
local pages = 0
for _, file in ipairs { page } do
    local f = io.open(file, "rb")
    if not f then break end
    f:close()
    pages = pages + 1
    local html = read(file)
    local anchors = {}
    for pos, name in html:gmatch('()<a name%s*=%s*"([^"]+)"') do
        anchors[#anchors + 1] = { pos = pos, name = name }
    end
    for i, a in ipairs(anchors) do
        local stop = anchors[i + 1] and anchors[i + 1].pos - 1 or #html
        items[a.name] = (items[a.name] or "") .. html:sub(a.pos, stop)
    end
end
if pages == 0 then
    io.stderr:write("check-doc: no HTML in ", doc_dir, " (run make doc)\n")
    os.exit(1)
end

local function has_param(anchor, name)
    local block = items[anchor]
    return block ~= nil and block:find('class="parameter">' .. name .. "</span>", 1, true) ~= nil
end

local missing, checked, seen = {}, 0, {}
local verbose = os.getenv("CHECK_DOC_VERBOSE")
local function need(ok, what, where)
    if seen[what] then return end
    if verbose then print("  " .. what) end
    seen[what] = true
    checked = checked + 1
    if not ok then missing[#missing + 1] = what .. "  (" .. where .. ")" end
end

for i = 2, #arg do
    local path = arg[i]
    local heading, header, lineno = "", nil, 0
    for line in (read(path) .. "\n"):gmatch("(.-)\n") do
        lineno = lineno + 1
        local where = path .. ":" .. lineno
        if line:match("^#+ ") then
            heading = line
        end
        if not line:match("^|") then
            header = nil
            -- a signature at the start of a line, such as `p2pnet.node([opts]) -> node`
            local recv, sep, name = line:match("^`([%a_][%w_]*)([.:])([%l_][%w_]*)%(")
            if recv and CLASS[recv] then
                local anchor = CLASS[recv] == "" and name or CLASS[recv] .. sep .. name
                need(items[anchor] ~= nil, anchor .. " (" .. line:match("^`[^`]*`") .. ")", where)
            end
        elseif not header then
            header = line:match("^|%s*([^|]-)%s*|") -- the first row names the columns
        elseif not line:match("^|%s*%-%-%-") then
            local cells = {}
            for cell in line:gsub("\\|", "/"):gmatch("|([^|]*)") do cells[#cells + 1] = cell end
            local first = cells[1] or ""
            if header == "option" then
                -- whose options: the function the heading names, the node's or the sim's
                local opt = first:match("^%s*`([%a_][%w_]*)`")
                local recv, sep, name = heading:match("`([%a_][%w_]*)([.:])([%l_][%w_]*)%(")
                local owner = recv and CLASS[recv] and (CLASS[recv] == "" and name
                                                        or CLASS[recv] .. sep .. name)
                if opt and owner then
                    need(has_param(owner, opt), owner .. " option " .. opt, where)
                elseif opt and heading:match("^## Simulator") then
                    need(has_param("sim", opt), "p2pnet.sim option " .. opt, where)
                elseif opt and heading:match("^## Nodes") then
                    need(has_param("NodeOptions", opt), "node option " .. opt, where)
                end
            elseif header == "event" then
                local ev = first:match('^%s*`"([%a_]+)"`')
                if ev then need(items[ev] ~= nil, "event " .. ev, where) end
            else
                local fn
                for span in first:gmatch("`([^`]+)`") do
                    local recv, sep, name = span:match("^([%a_][%w_]*)([.:])([%a_][%w_]*)")
                    if recv and CLASS[recv] then
                        local anchor = CLASS[recv] == "" and name or CLASS[recv] .. sep .. name
                        need(items[anchor] ~= nil, anchor .. " (" .. span .. ")", where)
                        if span:find("(", 1, true) then fn = fn or anchor end
                    end
                end
                if fn and items[fn] then
                    for _, cell in ipairs(cells) do
                        for opt in cell:gmatch("opts%.([%a_][%w_]*)") do
                            need(has_param(fn, opt), fn .. " option opts." .. opt, where)
                        end
                    end
                end
            end
        end
    end
end

if #missing > 0 then
    io.stderr:write(("check-doc: %d of %d names have no entry in the reference %s:\n")
        :format(#missing, checked, doc_dir))
    for _, m in ipairs(missing) do io.stderr:write("  ", m, "\n") end
    os.exit(1)
end
print(("check-doc: the reference documents all %d names of %s"):format(checked,
    table.concat(arg, ", ", 2)))
