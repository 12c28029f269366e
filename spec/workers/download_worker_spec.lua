-- workers/download_worker.lua: named arguments, an optional count.
local wh = require "workerhost"
local testing = require "workerhost.testing"

describe("DownloadWorker", function()
  local app, info

  before_each(function()
    app = testing.app { only = { "download_worker.lua" } }
    info = stub(wh.log, "info")
  end)

  after_each(function()
    info:revert()
    app:close()
  end)

  it("is defined with queue default, retry 5 and timeout 30", function()
    local def = app.workers.DownloadWorker
    assert.are.equal("DownloadWorker", def.name)
    assert.are.equal("default", def.queue)
    assert.are.equal(5, def.retry)
    assert.are.equal(30, def.timeout)
  end)

  it("performs with a user_guid", function()
    local jid, ok, err = app:perform_later("DownloadWorker", { user_guid = "foo" })
    assert.is_true(ok, err)
    assert.is_nil(err)
    assert.matches("^" .. ("%x"):rep(24) .. "$", jid)
    assert.stub(info).was.called_with("Sending payment report to user foo (1 report(s), jid " .. jid .. ")")
  end)

  it("performs with a count", function()
    local jid, ok, err = app:perform_later("DownloadWorker", { user_guid = "foo", count = 3 })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("Sending payment report to user foo (3 report(s), jid " .. jid .. ")")
  end)

  it("treats a null count as absent", function()
    local jid, ok, err = app:perform_later("DownloadWorker", { user_guid = "foo", count = wh.null })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("Sending payment report to user foo (1 report(s), jid " .. jid .. ")")
  end)

  it("refuses arguments of the wrong type before perform runs", function()
    assert.has_error(function() app:perform_later("DownloadWorker", { user_guid = 42 }) end,
      "wh.enqueue: DownloadWorker: args.user_guid: expected string, got integer")
    assert.has_error(function() app:perform_later("DownloadWorker", { user_guid = "foo", count = "3" }) end,
      "wh.enqueue: DownloadWorker: args.count: expected integer?, got string")
    assert.has_error(function() app:perform_later("DownloadWorker", { user_guid = "foo", count = 1.5 }) end,
      "wh.enqueue: DownloadWorker: args.count: expected integer?, got number 1.5")
    assert.stub(info).was_not.called()
  end)

  it("refuses a missing user_guid and unknown fields", function()
    assert.has_error(function() app:perform_later("DownloadWorker", {}) end,
      "wh.enqueue: DownloadWorker: args.user_guid: missing (expected string)")
    assert.has_error(function() app:perform_later("DownloadWorker", { user_guid = "foo", force = true }) end,
      "wh.enqueue: DownloadWorker: args.force: unknown field (known: count, user_guid)")
    assert.has_error(function() app:perform_later("DownloadWorker", { "foo" }) end,
      "wh.enqueue: DownloadWorker: args: expected an object of named arguments, got array")
  end)
end)
