local wh = require "workerhost"
local t = wh.types

-- PaymentWorker: charges an amount through a gateway; raises when the
-- gateway refuses, so the job fails (and is retried by the queue modes).
return wh.worker {
  queue = "critical",
  retry = 3,
  args = {
    account = t.string { min_len = 1, max_len = 64 },
    cents = t.integer { min = 1 },
    currency = t.enum({ "EUR", "USD", "GBP" }, { default = "EUR" }),
  },
  perform = function(args)
    if args.account:match("^blocked") then
      error("payment gateway refused account " .. args.account)
    end
    wh.log.info(("charged %d %s cents to %s"):format(args.cents, args.currency, args.account))
  end,
}
