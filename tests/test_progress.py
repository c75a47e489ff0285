"""The long stages' progress bars: rate and ETA, few lines in a log file, off on request."""
from tip_adapter_mm.utils.progress import progress_bar


def test_a_bar_in_a_log_file_is_a_few_lines_with_count_and_rate(capsys):
    for _ in progress_bar(range(5000), desc='encoding test', unit='view'):
        pass
    err = capsys.readouterr().err
    assert 'encoding test' in err and '5000/5000' in err and 'view/s' in err
    assert err.count('\r') + err.count('\n') <= 4  # not a line per step when stderr is not a terminal


def test_bars_can_be_turned_off(capsys, monkeypatch):
    monkeypatch.setenv('TIP_ADAPTER_MM_PROGRESS', '0')
    bar = progress_bar(total=10, desc='search')
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ''
