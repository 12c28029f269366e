local wh = require "workerhost"
local t = wh.types

-- NotifyWorker: nested objects, arrays, enums and defaults; enqueues a
-- DownloadWorker job for every recipient that asks for a report.
return wh.worker {
  args = {
    channel = t.enum { "email", "sms", "push" },
    recipients = t.array(t.object {
      user_guid = "string",
      wants_report = t.boolean:default(false),
    }, { min_items = 1, max_items = 100 }),
    subject = t.string { max_len = 200 }:optional(),
  },
  perform = function(args)
    for _, r in ipairs(args.recipients) do
      wh.log.info(("notify %s via %s: %s"):format(r.user_guid, args.channel, args.subject or "(no subject)"))
      if r.wants_report then
        wh.enqueue("DownloadWorker", { user_guid = r.user_guid })
      end
    end
  end,
}
