-- Sends a file to a peer, with a progress bar (bytes, %, rate, ETA) on stderr.
--   lua5.4 examples/send-file.lua recv [HOST:]PORT OUTFILE [--resume]  receives one file, exits
--   lua5.4 examples/send-file.lua send HOST:PORT FILE                   sends FILE, then exits
-- The receiver listens on every address unless HOST is given (127.0.0.1: this machine only);
-- PORT 0 picks a free port, and the line it prints says which.
-- The file is read only as the transfer has room and written as it arrives, so memory stays
-- flat whatever its size; the receiver checks a BLAKE2b hash of the whole. With --resume, a
-- receiver that already has the start of OUTFILE asks only for the rest. The exit status is 0
-- when the file arrived whole and checked, 1 otherwise.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

-- Seconds between two redraws of the bar.
local REDRAW = 0.25
local BAR_WIDTH = 30

local function human(n)
    local units = { "B", "KiB", "MiB", "GiB", "TiB" }
    local i = 1
    while n >= 1024 and i < #units do
        n = n / 1024
        i = i + 1
    end
    return ("%.1f %s"):format(n, units[i])
end

local function clock(s)
    if not s or s ~= s or s == math.huge then
        return "--:--"
    end
    s = math.floor(s + 0.5)
    return ("%02d:%02d"):format(math.floor(s / 60), s % 60)
end

-- A progress callback that redraws at most every REDRAW seconds of the node's clock.
local function progress_bar(node, label)
    local last, start_at, first = -math.huge, node:now(), nil
    return function(done, total, final)
        local now = node:now()
        if not final and now - last < REDRAW then
            return
        end
        last = now
        first = first or done
        local elapsed = now - start_at
        local rate = elapsed > 0 and (done - first) / elapsed or 0
        local line
        if total and total > 0 then
            local frac = done / total
            local fill = math.floor(frac * BAR_WIDTH)
            local eta = rate > 0 and (total - done) / rate or nil
            line = ("\r%s [%s%s] %5.1f%% %s / %s  %s/s  ETA %s"):format(label,
                ("#"):rep(fill), ("."):rep(BAR_WIDTH - fill), frac * 100, human(done),
                human(total), human(rate), clock(eta))
        else
            line = ("\r%s %s  %s/s"):format(label, human(done), human(rate))
        end
        io.stderr:write(line)
        if final then
            io.stderr:write(("  in %s\n"):format(clock(elapsed)))
        end
    end
end

local function usage()
    io.stderr:write("usage: send-file.lua recv [HOST:]PORT OUTFILE [--resume]\n" ..
                    "       send-file.lua send HOST:PORT FILE\n")
    os.exit(2)
end

local mode = arg[1]
local status = 1
if mode == "recv" then
    local host, port = (arg[2] or ""):match("^(.*):(%d+)$")
    if not host then
        host, port = "0.0.0.0", arg[2] -- every interface: a sender on another machine too
    end
    port = tonumber(port)
    local out, resume = arg[3], arg[4] == "--resume"
    if not port or not out then usage() end
    local node = assert(p2pnet.node { host = host, port = port })
    io.stderr:write("receiving on " .. node:address() .. " (id " .. node.id .. ")\n")
    node:on_transfer(function(_, transfer, info)
        local bar = progress_bar(node, "recv")
        io.stderr:write(("offer: %s (%s)\n"):format(tostring(info.name),
            info.total and human(info.total) or "size unknown"))
        return out, {
            resume = resume,
            progress = bar,
            done = function(ok, err)
                bar(transfer.done, transfer.total, true)
                io.stderr:write(ok and "received, hash checked\n" or ("failed: " .. err .. "\n"))
                status = ok and 0 or 1
                node:close()
            end,
        }
    end)
    node:run()
elseif mode == "send" then
    local target, path = arg[2], arg[3]
    if not target or not path then usage() end
    local node = assert(p2pnet.node { host = "0.0.0.0" })
    node:spawn(function()
        local peer, err = node:connect_await(target, 10)
        if not peer then
            io.stderr:write("connect failed: " .. err .. "\n")
            node:close()
            return
        end
        local bar = progress_bar(node, "send")
        local transfer
        transfer, err = peer:send_file(path, { progress = bar })
        if not transfer then
            io.stderr:write("cannot send: " .. err .. "\n")
            node:close()
            return
        end
        local ok
        ok, err = transfer:await()
        bar(transfer.done, transfer.total, true)
        io.stderr:write(ok and "sent, receiver checked the hash\n" or ("failed: " .. err .. "\n"))
        status = ok and 0 or 1
        node:close()
    end)
    node:run()
else
    usage()
end
os.exit(status)
