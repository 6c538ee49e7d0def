// ScoutTestSupport
