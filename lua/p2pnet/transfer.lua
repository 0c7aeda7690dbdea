-- p2pnet.transfer: streaming transfers larger than memory (docs/API.md "Streaming transfers").
--
-- The Lua layer over the core's transfers (core.transfer_*, docs/PROTOCOL.md section 4.2):
-- peer:send_file(source [, opts]) reads a file or a source function only when the transfer
-- has room (the core's WANT events), so memory stays flat whatever the size;
-- node:on_transfer(fn) decides what to do with an offer (a sink: a file path or a function);
-- a Transfer object shows progress and can be cancelled or awaited from a task.
--
-- init.lua loads this module with the task helpers it needs and calls install(node, st) for
-- every node; the core hands transfer events to st.transfer.

--- Streaming transfers (docs/API.md "Streaming transfers").
-- @module p2pnet

--- *(addition)* A streaming transfer: a file or a source function sent in chunks, with
-- progress, cancel, resume and an integrity check (BLAKE2b-256). `peer:send_file` makes an
-- outgoing one; `node:on_transfer`'s handler gets each offer. Its fields are plain fields.
-- @type Transfer

--- The peer.
-- @field Transfer.peer

--- A number naming the transfer on this node.
-- @field Transfer.id

--- `true` for `send_file`, `false` for offers received.
-- @field Transfer.outgoing

--- The sender's name or metadata (nil for none).
-- @field Transfer.name

--- The size in bytes; set at the end when it was not announced.
-- @field Transfer.total

--- Bytes written (sender) or received (receiver), from the start of the content.
-- @field Transfer.done

--- Bytes per second since it started (node clock).
-- @field Transfer.rate

--- `"offered"`, `"running"`, `"done"`, `"cancelled"` (by this side) or `"failed"`.
-- @field Transfer.status

--- After a failure, the same text `done` got: `"cancelled: <reason>"`,
-- `"peer cancelled: <reason>"`, `"integrity: integrity check failed"` or `"lost"`.
-- @field Transfer.error

-- The Transfer class: the methods below; fields are plain table fields.
local Transfer = {}
Transfer.__index = Transfer

local function is_transfer(t)
    return getmetatable(t) == Transfer
end

-- xpcall with arguments (5.2+ and LuaJIT have it; plain 5.1 gets a closure).
local xpcall_args = xpcall
if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
    local unpack = table.unpack or unpack -- luacheck: ignore 143
    xpcall_args = function(fn, handler, ...)
        local n, args = select("#", ...), { ... }
        return xpcall(function() return fn(unpack(args, 1, n)) end, handler)
    end
end

return function(core, tasks)
    local state = core.state
    local CHUNK = core.transfer_chunk
    local wait, wake, current_task = tasks.wait, tasks.wake, tasks.current_task

    local M = {}

    local function argerror(fname, arg, what)
        error(("%s: argument '%s' %s"):format(fname, arg, what), 3)
    end

    -- Calls fn(...) protected; an error is printed with the place it came from, like the
    -- core's handlers (docs/API.md "Handler errors"). Returns ok and fn's results.
    local function report(what, ok, ...)
        if not ok then
            io.stderr:write("p2pnet: error in ", what, ": ", tostring((...)), "\n")
        end
        return ok, ...
    end
    local function call(what, fn, ...)
        return report(what, xpcall_args(fn, debug.traceback, ...))
    end

    local function update_rate(t)
        local elapsed = t.node:now() - t.started_at
        t.rate = elapsed > 0 and (t.done - t.start) / elapsed or 0
    end

    local function progress(t)
        update_rate(t)
        if t.on_progress then
            call("transfer progress", t.on_progress, t.done, t.total)
        end
    end

    -- The transfer ended (the core's END event): files closed, waiters woken, done called.
    local function ended(t, status, reason)
        local st = state(t.node)
        st.transfers[t.id] = nil
        update_rate(t)
        t.status = status == "done" and "done" or status == "cancelled" and "cancelled" or "failed"
        local err
        if status ~= "done" then
            err = status
            if reason and reason ~= "" then
                err = err .. ": " .. reason
            end
            t.error = err
        end
        if t.file then
            t.file:close()
            t.file = nil
        end
        for _, w in ipairs(t.waiters) do
            wake(w.task, w.gen, status == "done" or nil, err)
        end
        t.waiters = {}
        if t.on_done then
            call("transfer done callback", t.on_done, status == "done", err)
        end
    end

    -- Reads the next piece of the source: a string of at most CHUNK bytes, or nil at the end.
    -- Raises what the source raises.
    local function read_source(t)
        local piece = t.rest
        if piece == nil then
            if t.file then
                piece = t.file:read(CHUNK)
            else
                piece = t.source()
                if piece ~= nil and type(piece) ~= "string" then
                    error("source must return strings or nil", 0)
                end
            end
            if piece == nil or piece == "" then
                return nil
            end
        end
        if #piece > CHUNK then
            t.rest = piece:sub(CHUNK + 1)
            return piece:sub(1, CHUNK)
        end
        t.rest = nil
        return piece
    end

    -- The receiver has [0, offset): read that much of the source into the hash (it covers the
    -- whole content) without sending it.
    local function skip_prefix(t, offset)
        local left = offset
        while left > 0 do
            local piece = read_source(t)
            if piece == nil then
                error("source ended before the receiver's offset", 0)
            end
            if #piece > left then
                t.rest = piece:sub(left + 1) .. (t.rest or "")
                piece = piece:sub(1, left)
            end
            assert(core.transfer_absorb(t.node, t.id, piece))
            left = left - #piece
        end
    end

    -- The transfer ended while the application's code ran (a progress callback or the source
    -- cancelled it, or closed the node): nothing more may be written.
    local function gone(t)
        return t.cancelled or state(t.node).transfers[t.id] ~= t
    end

    -- WANT: write from the source until the transfer is full or the source ends.
    local function pump(t, offset)
        local node, id = t.node, t.id
        if not t.running then
            t.running = true
            t.status = "running"
            t.start, t.done = offset, offset
            t.started_at = node:now()
            if offset > 0 then
                local ok, err = pcall(skip_prefix, t, offset)
                if not ok then
                    core.transfer_cancel(node, id, tostring(err))
                    return
                end
            end
        end
        while not gone(t) do
            local piece = t.pending
            if piece == nil then
                local ok, res = pcall(read_source, t)
                if gone(t) then
                    return
                elseif not ok then
                    core.transfer_cancel(node, id, "source failed: " .. tostring(res))
                    return
                end
                if res == nil then
                    local fin, err = core.transfer_finish(node, id)
                    if not fin then
                        core.transfer_cancel(node, id, err)
                    end
                    return
                end
                piece = res
            end
            local ok, err = core.transfer_write(node, id, piece)
            if not ok then
                t.pending = piece
                if err ~= "full" then
                    core.transfer_cancel(node, id, err)
                end
                return -- full: the next WANT goes on
            end
            t.pending = nil
            t.done = t.done + #piece
            progress(t)
        end
    end

    -- An offer: the user's handler says where it goes (a sink), or refuses it.
    local function offered(st, node, peer, id, total, meta)
        local t = setmetatable({
            node = node, peer = peer, id = id, total = total, name = meta, outgoing = false,
            done = 0, start = 0, rate = 0, status = "offered", waiters = {},
            started_at = node:now(),
        }, Transfer)
        st.transfers[id] = t
        local handler = st.on_transfer
        local sink, opts
        if handler then
            local ok
            ok, sink, opts = call("transfer handler", handler, peer, t,
                                  { name = meta, total = total })
            if not ok then
                sink = nil
            end
        end
        if type(opts) ~= "table" then
            opts = {}
        end
        t.on_progress, t.on_done = opts.progress, opts.done
        if st.transfers[id] == nil then
            return -- cancelled by the handler
        end
        local offset = 0
        if type(sink) == "string" then
            local f, err
            if opts.resume then
                f = io.open(sink, "rb")
                -- A file longer than the announced content cannot become it (Lua cannot
                -- truncate a file): it is written again from the start.
                if f and total and (f:seek("end") or 0) > total then
                    f:close()
                    f = nil
                elseif f then
                    f:seek("set", 0)
                end
                if f then
                    -- The whole content is hashed: the bytes kept are read back into it.
                    while true do
                        local piece = f:read(CHUNK)
                        if piece == nil then break end
                        if total and offset + #piece > total then
                            piece = piece:sub(1, total - offset)
                        end
                        if #piece == 0 or not core.transfer_absorb(node, id, piece) then break end
                        offset = offset + #piece
                    end
                    f:close()
                end
                f, err = io.open(sink, offset > 0 and "r+b" or "wb")
                if f and offset > 0 then
                    f:seek("set", offset)
                end
            else
                f, err = io.open(sink, "wb")
            end
            if not f then
                core.transfer_cancel(node, id, "cannot write: " .. tostring(err))
                return
            end
            t.file = f
        elseif type(sink) == "function" then
            t.sink = sink
        else
            core.transfer_cancel(node, id, "refused")
            return
        end
        t.start, t.done = offset, offset
        t.status = "running"
        t.started_at = node:now()
        local ok, err = core.transfer_accept(node, id, offset)
        if not ok then
            core.transfer_cancel(node, id, err)
        end
    end

    local function received(t, offset, data)
        local ok, err
        if t.file then
            ok, err = t.file:write(data)
        else
            ok = call("transfer sink", t.sink, data, offset)
            err = "sink failed"
        end
        if not ok then
            core.transfer_cancel(t.node, t.id, tostring(err))
            return
        end
        t.done = offset + #data
        progress(t)
    end

    -- The core's transfer events for the node of st.
    local function on_event(st, node, kind, peer, id, offset, total, status, data)
        local t = st.transfers[id]
        if kind == "offer" then
            offered(st, node, peer, id, total, data)
        elseif t == nil then
            return
        elseif kind == "want" then
            pump(t, offset)
        elseif kind == "data" then
            received(t, offset, data)
        else
            if total then
                t.total = total
            end
            ended(t, status, data)
        end
    end

    function M.install(node, st)
        st.transfers = {}
        st.transfer = function(kind, peer, id, offset, total, status, data)
            on_event(st, node, kind, peer, id, offset, total, status, data)
        end
    end

    -- ========================================================================================
    -- Methods

    --- Streaming transfers of a node.
    -- @type Node
    local Node, Peer = {}, {}

    --- *(addition)* Sets the handler of offers, `fn(peer, transfer, info) -> sink [, opts]`.
    -- `info.name` and `info.total` describe the offer. The sink is a file path (created and
    -- written), a function `sink(chunk, offset)`, or `nil`/`false` to refuse. The options are
    -- `progress(done, total)`, `done(ok, err)` and `resume = true` (with a file path). Without
    -- a handler every offer is refused.
    -- @tparam ?function fn the handler, or nil
    function Node:on_transfer(fn)
        if fn ~= nil and type(fn) ~= "function" then
            argerror("node:on_transfer", "fn", "must be a function or nil")
        end
        state(self).on_transfer = fn
    end

    --- Streaming transfers of a peer.
    -- @type Peer

    --- *(addition)* Sends a file, or what a function produces, however large; the source is
    -- read only when the transfer has room, so memory stays flat.
    -- @tparam string|function source a file path, or a function returning the next piece
    -- (`nil` or `""` at the end)
    -- @tparam[opt] table opts `name`/`meta` (a string for the receiver), `total` (the size of a
    -- function source), `lane` (default `p2pnet.TRANSFER_LANE`), `progress(done, total)`,
    -- `done(ok, err)`
    -- @treturn Transfer the transfer
    -- @return `nil, err`: `"peer is not connected"`, `"disconnected"`, `"too many transfers"`,
    -- `"metadata too long"`, `"queue full"`, or the error of opening the file
    function Peer:send_file(source, opts)
        local fname = "peer:send_file"
        if type(source) ~= "string" and type(source) ~= "function" then
            argerror(fname, "source", "must be a file path or a function")
        end
        if opts ~= nil and type(opts) ~= "table" then
            argerror(fname, "opts", "must be a table or nil")
        end
        opts = opts or {}
        for k in pairs(opts) do
            if k ~= "lane" and k ~= "name" and k ~= "meta" and k ~= "total" and k ~= "progress"
                and k ~= "done" then
                error(("%s: unknown option '%s'"):format(fname, tostring(k)), 2)
            end
        end
        local lane = opts.lane or core.TRANSFER_LANE
        if type(lane) ~= "number" or lane % 1 ~= 0 or lane < 0 or lane > 254 then
            argerror(fname, "opts.lane", "must be an integer 0-254")
        end
        local meta = opts.meta or opts.name
        if meta ~= nil and type(meta) ~= "string" then
            argerror(fname, "opts.name", "must be a string")
        end
        for _, k in ipairs { "progress", "done" } do
            if opts[k] ~= nil and type(opts[k]) ~= "function" then
                argerror(fname, "opts." .. k, "must be a function")
            end
        end
        local total = opts.total
        if total ~= nil and (type(total) ~= "number" or total < 0 or total % 1 ~= 0) then
            argerror(fname, "opts.total", "must be a size in bytes")
        end
        local node = core.peer_node(self)
        local file
        if type(source) == "string" then
            local err
            file, err = io.open(source, "rb")
            if not file then
                return nil, err
            end
            -- A path that opens but cannot be read (a directory) fails here, not later.
            local probe, rerr = file:read(0)
            total = file:seek("end")
            file:seek("set", 0)
            if (probe == nil and rerr) or type(total) ~= "number" then
                file:close()
                return nil, rerr or "cannot read " .. source
            end
            if meta == nil then
                meta = source:match("[^/\\]*$")
            end
        end
        local id, err = core.transfer_open(node, self, lane, total, meta)
        if not id then
            if file then file:close() end
            return nil, err
        end
        local t = setmetatable({
            node = node, peer = self, id = id, total = total, name = meta, outgoing = true,
            lane = lane, done = 0, start = 0, rate = 0, status = "offered", waiters = {},
            file = file, source = type(source) == "function" and source or nil,
            on_progress = opts.progress, on_done = opts.done, started_at = node:now(),
        }, Transfer)
        state(node).transfers[id] = t
        return t
    end

    --- Methods of a transfer.
    -- @type Transfer

    --- Ends the transfer from either side; the other side gets `"peer cancelled: reason"`.
    -- The end itself (`done`, `await`) follows at the next `poll`.
    -- @tparam[opt] string reason why
    -- @treturn boolean `true`
    -- @return `nil, "transfer has ended"`
    function Transfer:cancel(reason)
        if reason ~= nil and type(reason) ~= "string" then
            argerror("transfer:cancel", "reason", "must be a string or nil")
        end
        if self.cancelled or state(self.node).transfers[self.id] ~= self then
            return nil, "transfer has ended"
        end
        local ok, err = core.transfer_cancel(self.node, self.id, reason)
        -- The core has ended it: its end event follows at the next poll.
        self.cancelled = ok or nil
        return ok, err
    end

    --- In a task: waits for the end of the transfer.
    -- @tparam[opt] number timeout seconds
    -- @treturn boolean `true` once the receiver checked the hash
    -- @return `nil, err` (as in `Transfer.error`), or `nil, "timeout"`
    function Transfer:await(timeout)
        if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
            argerror("transfer:await", "timeout", "must be a number of seconds >= 0")
        end
        local task = current_task("transfer:await")
        if self.status == "done" then
            return true
        elseif self.error then
            return nil, self.error
        end
        self.waiters[#self.waiters + 1] = { task = task, gen = task.gen + 1 }
        return wait(task, timeout)
    end

    function Transfer:__tostring()
        return ("p2pnet.Transfer(%d, %s, %d/%s)"):format(self.id, self.status, self.done,
                                                         tostring(self.total or "?"))
    end

    core.extend("Node", Node)
    core.extend("Peer", Peer)
    M.is_transfer = is_transfer
    return M
end
