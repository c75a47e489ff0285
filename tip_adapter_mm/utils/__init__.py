from .io import atomic_json_dump, atomic_torch_save, atomic_write_path

__all__ = ['atomic_json_dump', 'atomic_torch_save', 'atomic_write_path']
