local wh = require "workerhost"

-- DownloadWorker: loco's example worker. Named arguments: the job's JSON
-- args are [{"user_guid": "...", "count": 3}].
return wh.worker {
  queue = "default",
  retry = 5,
  timeout = 30,
  args = {
    user_guid = "string",
    count = "integer?",
  },
  perform = function(args, job)
    wh.log.info("Sending payment report to user " .. args.user_guid
      .. " (" .. (args.count or 1) .. " report(s), jid " .. job.jid .. ")")
  end,
}
