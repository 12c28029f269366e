-- workers/payment_worker.lua: constrained strings and integers, an enum with
-- a default, and a job that raises.
local wh = require "workerhost"
local testing = require "workerhost.testing"

describe("PaymentWorker", function()
  local app, info

  before_each(function()
    app = testing.app { only = { "payment_worker.lua" } }
    info = stub(wh.log, "info")
  end)

  after_each(function()
    info:revert()
    app:close()
  end)

  local function refused(args, message)
    assert.has_error(function() app:perform_later("PaymentWorker", args) end, message)
    assert.stub(info).was_not.called()
  end

  it("is defined on the critical queue with retry 3", function()
    local def = app.workers.PaymentWorker
    assert.are.equal("critical", def.queue)
    assert.are.equal(3, def.retry)
  end)

  it("charges in EUR by default", function()
    local _, ok, err = app:perform_later("PaymentWorker", { account = "acc-1", cents = 500 })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("charged 500 EUR cents to acc-1")
  end)

  it("charges in the currency given", function()
    local _, ok, err = app:perform_later("PaymentWorker", { account = "acc-1", cents = 1, currency = "GBP" })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("charged 1 GBP cents to acc-1")
  end)

  it("a null currency gets the default", function()
    local _, ok, err = app:perform_later("PaymentWorker", { account = "acc-1", cents = 2, currency = wh.null })
    assert.is_true(ok, err)
    assert.stub(info).was.called_with("charged 2 EUR cents to acc-1")
  end)

  it("fails, with the worker's file and line, for an account starting with blocked", function()
    local jid, ok, err = app:perform_later("PaymentWorker", { account = "blocked-42", cents = 500 })
    assert.matches("^" .. ("%x"):rep(24) .. "$", jid)
    assert.is_false(ok)
    assert.matches("^%./workers/payment_worker%.lua:%d+: payment gateway refused account blocked%-42$", err)
    assert.stub(info).was_not.called()
  end)

  it("does not fail for an account that only contains blocked", function()
    local _, ok, err = app:perform_later("PaymentWorker", { account = "un-blocked", cents = 5 })
    assert.is_true(ok, err)
  end)

  it("counts the account's length in characters", function()
    refused({ account = ("é"):rep(65), cents = 5 },
      "wh.enqueue: PaymentWorker: args.account: expected at most 64 characters, got 65")
    local _, ok, err = app:perform_later("PaymentWorker", { account = ("é"):rep(64), cents = 5 }) -- 128 bytes
    assert.is_true(ok, err)
  end)

  it("refuses bad arguments before perform runs", function()
    refused({ account = "", cents = 5 },
      "wh.enqueue: PaymentWorker: args.account: expected at least 1 character, got 0")
    refused({ account = "acc", cents = 0 },
      "wh.enqueue: PaymentWorker: args.cents: expected an integer >= 1, got 0")
    refused({ account = "acc", cents = 9.99 },
      "wh.enqueue: PaymentWorker: args.cents: expected integer(min=1), got number 9.99")
    refused({ account = "acc", cents = 5, currency = "JPY" },
      'wh.enqueue: PaymentWorker: args.currency: expected enum("EUR", "USD", "GBP") = "EUR", got "JPY"')
    refused({ account = "acc" },
      "wh.enqueue: PaymentWorker: args.cents: missing (expected integer(min=1))")
  end)
end)
