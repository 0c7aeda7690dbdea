-- LÖVE configuration. Headless (`--headless` on the command line, or P2PNET_LOVE_HEADLESS=1
-- in the environment): no window and no graphics, so the game runs with no display at all,
-- for tests and servers. The game never plays sound, so audio is always off.
-- luacheck: globals love
local function headless()
    local env = os.getenv("P2PNET_LOVE_HEADLESS")
    if env and env ~= "" and env ~= "0" then
        return true
    end
    for _, a in ipairs(arg or {}) do
        if a == "--headless" then
            return true
        end
    end
    return false
end

function love.conf(t)
    t.identity = "p2pnet-love"
    t.version = "11.0"
    t.window.title = "p2pnet field"
    t.window.width, t.window.height = 800, 600
    t.window.vsync = 1
    t.modules.audio = false
    t.modules.sound = false
    t.modules.physics = false
    t.modules.video = false
    t.modules.joystick = false
    if headless() then
        t.window = false
        t.modules.window = false
        t.modules.graphics = false
        t.modules.image = false
        t.modules.font = false
    end
end
