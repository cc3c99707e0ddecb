-- wrk script: POST a small JUnit report with the load test's API key; counts non-202 answers.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TESTRELAY_LOAD_KEY")
wrk.headers["Content-Type"] = "application/xml"
wrk.body = [[<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="smoke" tests="5" failures="1" time="0.42">
  <testcase classname="api.Health" name="answers 200" time="0.01"/>
  <testcase classname="api.Reports" name="accepts JUnit" time="0.12"/>
  <testcase classname="api.Reports" name="accepts CTRF" time="0.09"/>
  <testcase classname="api.Reports" name="rejects XXE" time="0.02"/>
  <testcase classname="api.Runs" name="shows deliveries" time="0.18">
    <failure message="expected delivered, got queued">at Runs.spec:12</failure>
  </testcase>
</testsuite>
]]

local rejected = 0
response = function(status, headers, body)
  if status ~= 202 then rejected = rejected + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("LOAD requests=%d errors_socket=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
