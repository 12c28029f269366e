-- workers/notify_worker.lua: nested objects in an array, an enum, defaults;
-- enqueues DownloadWorker for recipients who want a report.
local wh = require "workerhost"
local testing = require "workerhost.testing"

describe("NotifyWorker", function()
  local app, info

  before_each(function()
    app = testing.app { only = { "notify_worker.lua", "download_worker.lua" } }
    info = stub(wh.log, "info")
  end)

  after_each(function()
    info:revert()
    app:close()
  end)

  -- The calls of a spy on wh.enqueue for class name `class`.
  local function enqueued(s, class)
    local out = {}
    for _, call in ipairs(s.calls) do
      if call.vals[1] == class then out[#out + 1] = call.vals[2] end
    end
    return out
  end

  local function refused(args, message)
    assert.has_error(function() app:perform_later("NotifyWorker", args) end, message)
    assert.stub(info).was_not.called()
  end

  it("notifies every recipient", function()
    local _, ok, err = app:perform_later("NotifyWorker", {
      channel = "email", subject = "Hi",
      recipients = { { user_guid = "u1" }, { user_guid = "u2" } },
    })
    assert.is_true(ok, err)
    assert.stub(info).was.called(2)
    assert.stub(info).was.called_with("notify u1 via email: Hi")
    assert.stub(info).was.called_with("notify u2 via email: Hi")
  end)

  it("says (no subject) when there is none", function()
    local _, ok, err = app:perform_later("NotifyWorker", { channel = "sms", recipients = { { user_guid = "u1" } } })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("notify u1 via sms: (no subject)")
  end)

  it("enqueues DownloadWorker for each recipient with wants_report, and only for them", function()
    local s = spy.on(wh, "enqueue")
    finally(function() s:revert() end)
    local _, ok, err = app:perform_later("NotifyWorker", {
      channel = "push",
      recipients = {
        { user_guid = "u1" },
        { user_guid = "u2", wants_report = true },
        { user_guid = "u3", wants_report = false },
        { user_guid = "u4", wants_report = true },
      },
    })
    assert.is_true(ok, err)
    assert.are.same({ { user_guid = "u2" }, { user_guid = "u4" } }, enqueued(s, "DownloadWorker"))
    -- the nested jobs ran at once
    assert.stub(info).was.called_with(match.matches("^Sending payment report to user u2 "))
    assert.stub(info).was.called_with(match.matches("^Sending payment report to user u4 "))
  end)

  it("wants_report defaults to false", function()
    local s = spy.on(wh, "enqueue")
    finally(function() s:revert() end)
    app:perform_later("NotifyWorker", { channel = "email", recipients = { { user_guid = "u1", wants_report = wh.null } } })
    assert.are.same({}, enqueued(s, "DownloadWorker"))
  end)

  it("fails when a report cannot be enqueued (DownloadWorker not loaded)", function()
    app:close()
    app = testing.app { only = { "notify_worker.lua" } }
    local _, ok, err = app:perform_later("NotifyWorker", {
      channel = "email", recipients = { { user_guid = "u1", wants_report = true } },
    })
    assert.is_false(ok)
    assert.matches('notify_worker%.lua:%d+: wh%.enqueue: unknown worker class "DownloadWorker"$', err)
  end)

  it("refuses bad arguments, naming the nested path", function()
    refused({ channel = "fax", recipients = { { user_guid = "u1" } } },
      'wh.enqueue: NotifyWorker: args.channel: expected enum("email", "sms", "push"), got "fax"')
    refused({ channel = "email", recipients = {} },
      "wh.enqueue: NotifyWorker: args.recipients: expected at least 1 item, got 0")
    refused({ channel = "email", recipients = { { user_guid = "u1" }, {} } },
      "wh.enqueue: NotifyWorker: args.recipients[2].user_guid: missing (expected string)")
    refused({ channel = "email", recipients = { { user_guid = "u1" }, { user_guid = 2 } } },
      "wh.enqueue: NotifyWorker: args.recipients[2].user_guid: expected string, got integer")
    refused({ channel = "email", recipients = { { user_guid = "u1", wants_report = "yes" } } },
      "wh.enqueue: NotifyWorker: args.recipients[1].wants_report: expected boolean = false, got string")
    refused({ channel = "email", recipients = { { user_guid = "u1", email = "x@y" } } },
      "wh.enqueue: NotifyWorker: args.recipients[1].email: unknown field (known: user_guid, wants_report)")
    refused({ channel = "email", recipients = { { user_guid = "u1" } }, subject = ("s"):rep(201) },
      "wh.enqueue: NotifyWorker: args.subject: expected at most 200 characters, got 201")
  end)

  it("refuses more than 100 recipients", function()
    local many = {}
    for i = 1, 101 do many[i] = { user_guid = "u" .. i } end
    refused({ channel = "email", recipients = many },
      "wh.enqueue: NotifyWorker: args.recipients: expected at most 100 items, got 101")
    many[101] = nil
    local _, ok, err = app:perform_later("NotifyWorker", { channel = "email", recipients = many })
    assert.is_true(ok, err)
    assert.stub(info).was.called(100)
  end)
end)
