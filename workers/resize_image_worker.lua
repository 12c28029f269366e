local wh = require "workerhost"
local t = wh.types

-- ResizeImageWorker: positional arguments, as Ruby Sidekiq clients write
-- them: args = [url, width, height]; height is optional.
return wh.worker {
  queue = "media",
  args = { "string", t.integer { min = 1, max = 8192 }, t.integer { min = 1, max = 8192 }:optional() },
  perform = function(args)
    local url, width, height = args[1], args[2], args[3] or args[2]
    wh.log.info(("resized %s to %dx%d"):format(url, width, height))
  end,
}
