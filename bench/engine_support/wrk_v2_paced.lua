-- Paced variant of wrk_v2.lua: before each request a connection waits a random time with
-- mean `mean_delay_ms` (second argument after `--`), exponentially distributed so that the
-- connections do not fall into lock-step and arrivals look like a Poisson stream. The offered
-- load then stays roughly constant whatever the server's latency, which lets two
-- configurations be compared at equal load instead of at saturation. wrk's timers have
-- millisecond resolution; the rounding is randomized so the mean is preserved.

local script_dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(script_dir .. "wrk_v2.lua")

local base_init = init
local mean_delay_ms = 0

function init(args)
  base_init(args)
  mean_delay_ms = tonumber(args[2]) or 0
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function delay()
  local wait = -math.log(1 - math.random()) * mean_delay_ms
  return math.floor(wait + math.random())
end
