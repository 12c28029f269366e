# frozen_string_literal: true
# interop_workers.rb -- Ruby Sidekiq 6.4 workers for ruby_runs_our_jobs.sh.
# Loaded by `sidekiq -r`. Redis comes from REDIS_URL. Every job appends one
# JSON line {worker, jid, args, queue, retry, created_at, enqueued_at} to
# $INTEROP_OUT, so the script can check what Ruby received.
require "json"
require "sidekiq"

# Debian pairs Sidekiq 6.4.1 with redis-rb 4.8, which warns on every SADD
# (see ../shared/bench/peers/sidekiq/noop_worker.rb); behaviour is unchanged.
Redis.sadd_returns_boolean = false if Redis.respond_to?(:sadd_returns_boolean=)

module Interop
  OUT = ENV.fetch("INTEROP_OUT")
  LOCK = Mutex.new

  def self.record(worker, job, args)
    line = JSON.generate(worker: worker, jid: job.jid, args: args)
    LOCK.synchronize { File.open(OUT, "a") { |f| f.puts(line) } }
  end
end

# Also a Lua worker (echo_worker.lua): named arguments, checked by workerhost.
class EchoWorker
  include Sidekiq::Worker

  def perform(args)
    Interop.record("EchoWorker", self, [args])
  end
end

# Also a Lua worker (pos_worker.lua): positional arguments.
class PosWorker
  include Sidekiq::Worker
  sidekiq_options queue: "positional"

  def perform(name, count)
    Interop.record("PosWorker", self, [name, count])
  end
end

# Defined only here: workerhost pushes it with --unchecked.
class RubyOnlyWorker
  include Sidekiq::Worker

  def perform(*args)
    Interop.record("RubyOnlyWorker", self, args)
  end
end

Sidekiq.configure_server do |config|
  config.logger.level = Logger::WARN
  # poll the schedule every ~1 s after a first wait of at most 5 s (instead of 10-15 s)
  config.options[:poll_interval_average] = 1
end
