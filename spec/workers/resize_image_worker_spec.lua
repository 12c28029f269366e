-- workers/resize_image_worker.lua: positional arguments [url, width, height?].
local wh = require "workerhost"
local testing = require "workerhost.testing"

describe("ResizeImageWorker", function()
  local app, info

  before_each(function()
    app = testing.app { only = { "resize_image_worker.lua" } }
    info = stub(wh.log, "info")
  end)

  after_each(function()
    info:revert()
    app:close()
  end)

  local function refused(args, message)
    assert.has_error(function() app:perform_later("ResizeImageWorker", args) end, message)
    assert.stub(info).was_not.called()
  end

  it("is defined on the media queue with the default retry", function()
    local def = app.workers.ResizeImageWorker
    assert.are.equal("media", def.queue)
    assert.are.equal(25, def.retry)
  end)

  it("resizes to width x height", function()
    local _, ok, err = app:perform_later("ResizeImageWorker", { "https://x/a.png", 100, 50 })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("resized https://x/a.png to 100x50")
  end)

  it("makes a square when the height is left out or null", function()
    local _, ok, err = app:perform_later("ResizeImageWorker", { "https://x/a.png", 64 })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("resized https://x/a.png to 64x64")
    _, ok, err = app:perform_later("ResizeImageWorker", { "https://x/b.png", 32, wh.null })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("resized https://x/b.png to 32x32")
  end)

  it("accepts the bounds 1 and 8192", function()
    local _, ok, err = app:perform_later("ResizeImageWorker", { "u", 1, 8192 })
    assert.is_true(ok, err)
  end)

  it("refuses bad arguments, naming the position", function()
    refused({ "u", 1.5 },
      "wh.enqueue: ResizeImageWorker: args[2]: expected integer(min=1, max=8192), got number 1.5")
    refused({ "u", 0 }, "wh.enqueue: ResizeImageWorker: args[2]: expected an integer >= 1, got 0")
    refused({ "u", 10, 8193 }, "wh.enqueue: ResizeImageWorker: args[3]: expected an integer <= 8192, got 8193")
    refused({ 5, 10 }, "wh.enqueue: ResizeImageWorker: args[1]: expected string, got integer")
  end)

  it("refuses too few, too many or named arguments", function()
    refused({ "u" }, "wh.enqueue: ResizeImageWorker: args: expected 2 to 3 arguments, got 1")
    refused({ "u", 1, 2, 3 }, "wh.enqueue: ResizeImageWorker: args: expected 2 to 3 arguments, got 4")
    refused({ url = "u", width = 1 }, "wh.enqueue: ResizeImageWorker: args: expected a list of positional arguments")
  end)
end)
